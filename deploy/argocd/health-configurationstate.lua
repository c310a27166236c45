-- Argo CD health of a metallb.io ConfigurationState (one per controller and per speaker):
-- Healthy when ferrolb reports the configuration valid and applied, Degraded with its
-- error summary when not, Progressing until the first report.
local hs = {}
if obj.status == nil or obj.status.result == nil then
  hs.status = "Progressing"
  hs.message = "waiting for ferrolb to report"
  return hs
end
if obj.status.result == "Valid" then
  hs.status = "Healthy"
  hs.message = "configuration valid and applied"
  return hs
end
hs.status = "Degraded"
hs.message = obj.status.errorSummary or obj.status.result
return hs
