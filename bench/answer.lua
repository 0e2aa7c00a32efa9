-- wrk script: GET <path>?from=..&to=..&uuid=..&conversation_uuid=.. like Vonage's answer request.
-- Arguments (after --): <path> <file of "from=...&to=..." lines> [seed] [Authorization header]
-- Callers are drawn at random from the file; uuids are unique per request.
local path = "/webhooks/answer"
local queries = {}
local counter = 0
local prefix = "bench"

function init(args)
  path = args[1] or path
  for line in io.lines(args[2]) do
    queries[#queries + 1] = line
  end
  if args[4] then
    wrk.headers["Authorization"] = args[4]
  end
  math.randomseed(tonumber(args[3] or "1"))
  prefix = string.format("bench-%d-%d", tonumber(args[3] or "1"), math.random(1, 1000000000))
end

function request()
  counter = counter + 1
  local query = queries[math.random(#queries)]
  local id = prefix .. "-" .. counter
  return wrk.format("GET", path .. "?" .. query .. "&uuid=" .. id .. "&conversation_uuid=CON-" .. id)
end
