-- Argo CD health check for envisolation.io/EnvironmentIsolation.
-- Healthy: Ready=True for the current generation. Progressing: the operator has not yet
-- reported on this generation. Degraded: Ready=False, or Conflict/Exposed True.
local hs = {status = "Progressing", message = "Waiting for the envisolation operator"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if observed == nil or (generation ~= nil and observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local ready, conflict, exposed
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    elseif condition.type == "Conflict" then
      conflict = condition
    elseif condition.type == "Exposed" then
      exposed = condition
    end
  end
end
if conflict ~= nil and conflict.status == "True" then
  return {status = "Degraded", message = "Conflict: " .. (conflict.message or "")}
end
if exposed ~= nil and exposed.status == "True" then
  return {status = "Degraded", message = "Exposed: " .. (exposed.message or "")}
end
if ready == nil then
  return hs
end
if ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration < generation then
  hs.message = "Waiting for the operator to reconcile generation " .. tostring(generation)
  return hs
end
if ready.status == "True" then
  return {status = "Healthy", message = ready.message or ""}
end
if ready.status == "False" and ready.reason == "Progressing" then
  return {status = "Progressing", message = ready.message or ""}
end
if ready.status == "False" then
  return {status = "Degraded", message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")}
end
return hs
