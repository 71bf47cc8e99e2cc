-- Shared by the miltertest scripts: connect to the milter named by $MILTER_SOCKET and
-- send the connection of an ordinary SMTP client.
function check(result, what)
  if result ~= nil then
    error(what .. " failed: " .. tostring(result))
  end
end

function open()
  local conn = mt.connect(os.getenv("MILTER_SOCKET"), 5, 0.2)
  if conn == nil then
    error("cannot connect to " .. os.getenv("MILTER_SOCKET"))
  end
  check(mt.conninfo(conn, "client.example", "192.0.2.10"), "conninfo")
  return conn
end

function expect_reply(conn, expected, what)
  local reply = mt.getreply(conn)
  if reply ~= expected then
    error(what .. ": unexpected reply " .. tostring(reply))
  end
end
