-- wrk script for bench/read.sh: reads Patient/{id} by random id, or (MIX=1)
-- a mix of 80% reads, 10% searches and 10% updates, each with a token
-- picked at random from TOKENS (comma-separated). Prints one parseable
-- line of latency percentiles at the end.
local patients = tonumber(os.getenv("PATIENTS") or "1000")
local tokens = {}
for t in string.gmatch(os.getenv("TOKENS") or "", "[^,]+") do
  table.insert(tokens, t)
end
local mix = os.getenv("MIX") == "1"
local base = os.getenv("BASE_PATH") or "/fhir"
local counter = 0

local function pid()
  return string.format("pat-%06d", math.random(1, patients))
end

init = function(args)
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 100000)
end

request = function()
  local token = tokens[math.random(1, #tokens)]
  local headers = { ["Authorization"] = "Bearer " .. token, ["Accept"] = "application/fhir+json" }
  if not mix then
    return wrk.format("GET", base .. "/Patient/" .. pid(), headers)
  end
  local r = math.random(1, 10)
  if r <= 8 then
    return wrk.format("GET", base .. "/Patient/" .. pid(), headers)
  elseif r == 9 then
    return wrk.format("GET", base .. "/Observation?patient=Patient/" .. pid() .. "&code=http://loinc.org|8480-6", headers)
  else
    counter = counter + 1
    local id = pid()
    headers["Content-Type"] = "application/fhir+json"
    local body = string.format(
      '{"resourceType":"Observation","id":"bench-%s","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s"},"valueQuantity":{"value":%d,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}',
      id, id, 50 + (counter % 60))
    return wrk.format("PUT", base .. "/Observation/bench-" .. id, headers, body)
  end
end

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f requests=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.requests, errors))
end
