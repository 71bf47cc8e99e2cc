-- Negotiation: exactly the actions optout-milter uses, and the stages it skips.
dofile(os.getenv("MILTERTEST_DIR") .. "/common.lua")
local conn = open()
for _, action in ipairs({SMFIF_ADDHDRS, SMFIF_CHGHDRS, SMFIF_DELRCPT}) do
  if not mt.test_action(conn, action) then
    error("action " .. action .. " not requested")
  end
end
for _, action in ipairs({SMFIF_CHGBODY, SMFIF_ADDRCPT, SMFIF_CHGFROM, SMFIF_QUARANTINE}) do
  if mt.test_action(conn, action) then
    error("action " .. action .. " requested but never used")
  end
end
for _, option in ipairs({SMFIP_NOHELO, SMFIP_NOBODY, SMFIP_NOEOH}) do
  if not mt.test_option(conn, option) then
    error("stage option " .. option .. " not requested")
  end
end
if mt.test_option(conn, SMFIP_NORCPT) then
  error("the RCPT stage must not be skipped")
end
mt.disconnect(conn)
