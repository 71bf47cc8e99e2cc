-- Single-recipient marketing gets both unsubscribe headers at end of message.
dofile(os.getenv("MILTERTEST_DIR") .. "/common.lua")
local conn = open()
check(mt.mailfrom(conn, "<news@example.com>"), "mailfrom")
check(mt.rcptto(conn, "<stays@example.org>"), "rcptto")
check(mt.header(conn, "From", "news@example.com"), "header From")
check(mt.header(conn, "Subject", "This week"), "header Subject")
check(mt.eom(conn), "eom")
expect_reply(conn, SMFIR_CONTINUE, "eom")
if not mt.eom_check(conn, MT_HDRADD, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click") then
  error("no List-Unsubscribe-Post added")
end
local value = mt.getheader(conn, "List-Unsubscribe", 0)
if value == nil or not string.find(value, "^<https://unsubscribe%.example%.com/u/[a-z2-7]+>,") then
  error("unexpected List-Unsubscribe: " .. tostring(value))
end
if not string.find(value, "<mailto:unsubscribe%+[a-z2-7]+@example%.com%?subject=unsubscribe>$") then
  error("no mailto in List-Unsubscribe: " .. value)
end
mt.disconnect(conn)
