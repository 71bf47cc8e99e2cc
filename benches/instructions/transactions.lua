-- $TRANSACTIONS milter sessions, one after the other, each as an MTA sends a marketing
-- message to one recipient: connect, MAIL (with a queue id), RCPT, two headers, end of
-- message, which gets the unsubscribe headers with a per-recipient token.
local n = tonumber(os.getenv("TRANSACTIONS"))
for i = 1, n do
  local conn = mt.connect(os.getenv("MILTER_SOCKET"), 100, 0.2)
  if conn == nil then
    error("cannot connect to " .. os.getenv("MILTER_SOCKET"))
  end
  mt.set_timeout(60)
  mt.conninfo(conn, "client.example", "192.0.2.10")
  mt.macro(conn, SMFIC_MAIL, "i", string.format("Q%06d", i))
  mt.mailfrom(conn, "<news@example.com>")
  mt.rcptto(conn, "<reader" .. (i % 50) .. "@example.org>")
  mt.header(conn, "From", "news@example.com")
  mt.header(conn, "Subject", "This week")
  mt.eom(conn)
  if mt.getreply(conn) ~= SMFIR_CONTINUE then
    error("transaction " .. i .. ": unexpected reply at end of message")
  end
  if not mt.eom_check(conn, MT_HDRADD, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click") then
    error("transaction " .. i .. ": no unsubscribe headers")
  end
  mt.disconnect(conn)
end
