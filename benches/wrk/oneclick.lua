-- wrk script: RFC 8058 one-click POSTs, each to a different token, read from the file
-- named by the TOKENS environment variable. Each wrk thread takes its own slice, so no
-- token is used twice and every 200 is a new durable opt-out.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
  tokens[#tokens + 1] = line
end

local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

local next_index
function init(args)
  next_index = id * 1000000
end

function request()
  next_index = next_index + 1
  local token = tokens[(next_index % #tokens) + 1]
  return wrk.format("POST", "/u/" .. token,
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "List-Unsubscribe=One-Click")
end
