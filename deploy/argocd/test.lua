-- Runs the health checks on sample objects as Argo CD would (the object in the global
-- `obj`); exits 1 on the first wrong answer. lua5.4 deploy/argocd/test.lua
local dir = arg[0]:match("(.*/)") or "./"

local function health(script, object)
  obj = object
  return dofile(dir .. script)
end

local cases = {
  { "health-configurationstate.lua", {}, "Progressing" },
  { "health-configurationstate.lua", { status = { result = "Valid" } }, "Healthy" },
  { "health-configurationstate.lua",
    { status = { result = "Invalid", errorSummary = "IPAddressPool/metallb-system/b: overlaps a" } },
    "Degraded", "IPAddressPool/metallb-system/b: overlaps a" },
  { "health-ipaddresspool.lua", { status = {} }, "Progressing" },
  { "health-ipaddresspool.lua",
    { status = { assignedIPv4 = 3, availableIPv4 = 5, assignedIPv6 = 0, availableIPv6 = 0 } },
    "Healthy", "5 IPv4 and 0 IPv6 addresses free" },
  { "health-ipaddresspool.lua",
    { status = { assignedIPv4 = 8, availableIPv4 = 0, assignedIPv6 = 0, availableIPv6 = 0 } },
    "Degraded", "no free IPv4 address" },
}
for i, case in ipairs(cases) do
  local hs = health(case[1], case[2])
  if hs.status ~= case[3] or (case[4] ~= nil and hs.message ~= case[4]) then
    io.stderr:write(string.format("case %d (%s): got %s %q, want %s %q\n", i, case[1],
      tostring(hs.status), tostring(hs.message), case[3], tostring(case[4])))
    os.exit(1)
  end
end
print(string.format("argocd health checks: %d cases passed", #cases))
