-- wrk: POST /Users with a new, unique userName per request.
-- Arguments after `--`: PATH_PREFIX ("" or "/v2"), TOKEN.
-- Each wrk thread runs its own Lua state with the same default seed: the names carry the
-- thread's number and a counter, or two threads would post the same names and half the
-- requests would be (correct) 409 uniqueness conflicts.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  prefix = args[1] or ""
  token = args[2] or "bench-token"
  counter = 0
  failures = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"new-%d-%d-%d",'
      .. '"name":{"givenName":"New","familyName":"Hire"},"emails":[{"value":"new-%d-%d@example.org","type":"work","primary":true}]}',
    tid, os.time(), counter, tid, counter)
  return wrk.format("POST", prefix .. "/Users", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/scim+json",
  }, body)
end

function response(status, headers, body)
  if status ~= 201 then
    failures = failures + 1
    if failures == 1 then print("first failure: " .. status .. " " .. body) end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("failures") or 0) end
  print(string.format("failed: %d", total))
end
