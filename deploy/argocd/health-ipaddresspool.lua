-- Argo CD health of a metallb.io IPAddressPool, from the status the controller writes:
-- Degraded when every address of a family in the pool is in use (new Services stay
-- <pending>), Healthy otherwise, Progressing until the controller has counted the pool.
local hs = {}
local s = obj.status
if s == nil or (s.availableIPv4 == nil and s.availableIPv6 == nil) then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to count the pool"
  return hs
end
local full = {}
if s.assignedIPv4 ~= nil and s.assignedIPv4 > 0 and s.availableIPv4 == 0 then
  table.insert(full, "IPv4")
end
if s.assignedIPv6 ~= nil and s.assignedIPv6 > 0 and s.availableIPv6 == 0 then
  table.insert(full, "IPv6")
end
if #full > 0 then
  hs.status = "Degraded"
  hs.message = "no free " .. table.concat(full, " or ") .. " address"
  return hs
end
hs.status = "Healthy"
hs.message = string.format("%d IPv4 and %d IPv6 addresses free",
  s.availableIPv4 or 0, s.availableIPv6 or 0)
return hs
