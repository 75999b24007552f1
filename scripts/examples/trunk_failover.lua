-- scripts/examples/trunk_failover.lua: calls to the outside world go out through a SIP
-- trunk, with failover to a backup trunk.
--
-- What it does:
--   * REGISTER and requests for our own users are handled as in scripts/default.lua.
--   * Any other INVITE (a number or a foreign domain) is sent to the primary trunk; if the
--     primary answers 503 / 500 / 408 or does not answer within 8 s, the same call is tried
--     on the backup trunk (serial forking by q, RFC 3261 §16.6).
--   * The caller must be one of ours (From in our domains): the trunk costs money.
--
-- Only the two URIs below need changing.

local PRIMARY = "sip:trunk1.carrier.example;transport=tcp"
local BACKUP  = "sip:trunk2.carrier.example;transport=tcp"

local function for_us(uri)
  return uri.host ~= nil and config.is_local(uri.host)
end

-- The trunk is addressed with the dialled number as user part; the host is the trunk's.
local function via_trunk(req, trunk)
  local host = trunk:match("^sip:([^;]+)")
  local params = trunk:match("(;.*)$") or ""
  return "sip:" .. req.uri.user .. "@" .. host .. params
end

function on_request(req)
  if req.method == "REGISTER" then
    if not for_us(req.uri) then return req:reply(403, "Not Our Domain") end
    return registrar.save(req)
  end
  if req:in_dialog() then return req:relay() end
  if req.method == "INVITE" then req:record_route() end

  if for_us(req.uri) then
    local contacts = location.lookup(req.uri)
    if #contacts > 0 then return req:relay(contacts, {mode = "q"}) end
    if req.method ~= "INVITE" then return req:reply(404, "Not Found") end
    -- an INVITE to a number we do not host falls through to the trunk
  end

  if req.method ~= "INVITE" or not for_us(req.from.uri) then
    return req:reply(403, "Not a relay for this domain")
  end
  if req.uri.user == nil then return req:reply(484, "Address Incomplete") end

  -- Two q-groups: the primary alone first, then the backup.
  return req:relay({
    {uri = via_trunk(req, PRIMARY), q = 1.0},
    {uri = via_trunk(req, BACKUP), q = 0.5},
  }, {mode = "serial", timeout = 8000, failover_codes = {503, 500, 408}})
end
