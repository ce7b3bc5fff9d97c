-- wrk: GET /Users?filter=userName eq "userNNNNNN" for random existing users.
-- Arguments after `--`: PATH_PREFIX ("" or "/v2"), TOKEN, USERS.
-- Each wrk thread runs its own Lua state with the same default seed, so each is seeded
-- with its own number.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  prefix = args[1] or ""
  token = args[2] or "bench-token"
  users = tonumber(args[3] or "100000")
  math.randomseed(tid * 7919)
  failures = 0
end

function request()
  local name = string.format("user%06d", math.random(1, users))
  local path = prefix .. "/Users?filter=userName%20eq%20%22" .. name .. "%22"
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end

function response(status, headers, body)
  if status ~= 200 then
    failures = failures + 1
    if failures == 1 then print("first failure: " .. status .. " " .. body) end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("failures") or 0) end
  print(string.format("failed: %d", total))
end
