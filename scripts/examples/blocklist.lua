-- scripts/examples/blocklist.lua: refuse requests from listed source addresses.
--
-- What it does:
--   * A request whose previous hop (req.source.ip) is in BLOCKED gets 403 Forbidden before
--     anything else happens, REGISTER included. Each refusal is logged at warn level.
--   * Everything else is routed as in scripts/default.lua.
--
-- The list is read once, when the script is loaded (and again on every reload). To take it
-- from a file instead, fill BLOCKED at the top level, e.g.
--   for line in io.lines("/etc/switchboard/blocked.txt") do BLOCKED[line] = true end
-- (at the top level only: file I/O inside on_request would block the worker).

BLOCKED = {
  ["203.0.113.66"] = true,
  ["198.51.100.23"] = true,
  ["2001:db8::bad"] = true,   -- IPv6 without brackets, as req.source.ip gives it
}

local function for_us(uri)
  return uri.host ~= nil and config.is_local(uri.host)
end

function on_request(req)
  if BLOCKED[req.source.ip] then
    log.warn("blocked ", req.method, " from ", req.source.ip)
    return req:reply(403, "Forbidden")
  end

  if req.method == "REGISTER" then
    if not for_us(req.uri) then return req:reply(403, "Not Our Domain") end
    return registrar.save(req)
  end
  if req:in_dialog() then return req:relay() end
  if not for_us(req.uri) then return req:reply(403, "Not a relay for this domain") end
  if req.method == "INVITE" then req:record_route() end
  local contacts = location.lookup(req.uri)
  if #contacts == 0 then return req:reply(404, "Not Found") end
  return req:relay(contacts, {mode = "q"})
end
