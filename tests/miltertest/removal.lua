-- Header-classified marketing: the opted-out recipient is removed at end of message and
-- the list header is deleted; transactional mail is left alone.
dofile(os.getenv("MILTERTEST_DIR") .. "/common.lua")
local conn = open()
check(mt.mailfrom(conn, "<app@shop.example.com>"), "mailfrom")
check(mt.rcptto(conn, "<left-deals@example.org>"), "rcptto left-deals")
check(mt.rcptto(conn, "<stays@example.org>"), "rcptto stays")
check(mt.header(conn, "X-Optout-List", "deals"), "header X-Optout-List")
check(mt.eom(conn), "eom")
expect_reply(conn, SMFIR_CONTINUE, "eom")
if not mt.eom_check(conn, MT_RCPTDELETE, "<left-deals@example.org>") then
  error("opted-out recipient not removed")
end
if mt.eom_check(conn, MT_RCPTDELETE, "<stays@example.org>") then
  error("the other recipient was removed")
end
if not (mt.eom_check(conn, MT_HDRDELETE, "X-Optout-List") or mt.eom_check(conn, MT_HDRCHANGE, "X-Optout-List")) then
  error("list header not removed")
end
mt.disconnect(conn)

conn = open()
check(mt.mailfrom(conn, "<receipts@shop.example.com>"), "mailfrom")
check(mt.rcptto(conn, "<left-deals@example.org>"), "rcptto")
expect_reply(conn, SMFIR_CONTINUE, "rcptto transactional")
check(mt.eom(conn), "eom")
if mt.eom_check(conn, MT_RCPTDELETE, "<left-deals@example.org>") or mt.eom_check(conn, MT_HDRADD) then
  error("transactional mail was changed")
end
mt.disconnect(conn)
