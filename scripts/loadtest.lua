-- wrk request mix for examples/http_service.rs: mostly the healthy route,
-- and every blocking route in turn. Used by scripts/loadtest.sh and
-- tests/loadtest.rs.
local paths = {
  "/health", "/config", "/health", "/stats", "/health", "/login",
  "/health", "/export", "/health", "/disk", "/health", "/stats",
}
local i = 0

request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
