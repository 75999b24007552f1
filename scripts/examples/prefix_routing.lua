-- scripts/examples/prefix_routing.lua: least-cost routing by dialled prefix.
--
-- What it does:
--   * The dialled number is the Request-URI's user part ("+4930123456", "004930123456" and
--     "4930123456" are the same number: the leading "+" or "00" is dropped).
--   * The longest prefix of the number found in ROUTES picks the gateway; the request goes
--     to sip:<number>@<gateway>. The header X-LCR-Prefix says which entry matched.
--   * No matching prefix: 404. Not a number at all: 484 Address Incomplete.
--   * REGISTER, in-dialog requests and our own users as in scripts/default.lua.

-- prefix -> gateway (host[:port][;params]). Longer prefixes win.
ROUTES = {
  ["1"]    = "gw-us.example.net",
  ["44"]   = "gw-uk.example.net",
  ["49"]   = "gw-de.example.net",
  ["4930"] = "gw-berlin.example.net:5080",
  ["33"]   = "gw-fr.example.net;transport=tcp",
}

-- The longest prefix length present, so the search below stays short.
local LONGEST = 0
for prefix in pairs(ROUTES) do LONGEST = math.max(LONGEST, #prefix) end

local function normalise(user)
  if user == nil then return nil end
  local n = user:gsub("[%s%-%.%(%)]", "")   -- visual separators
  n = n:gsub("^%+", ""):gsub("^00", "")
  if n:match("^%d+$") then return n end
  return nil
end

-- Returns the gateway and the prefix that matched, or nil.
function route_for(number)
  for len = math.min(#number, LONGEST), 1, -1 do
    local prefix = number:sub(1, len)
    local gw = ROUTES[prefix]
    if gw then return gw, prefix end
  end
  return nil
end

local function for_us(uri)
  return uri.host ~= nil and config.is_local(uri.host)
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
  end

  local number = normalise(req.uri.user)
  if number == nil then return req:reply(484, "Address Incomplete") end
  local gw, prefix = route_for(number)
  if gw == nil then
    log.info("no route for ", number)
    return req:reply(404, "No Route")
  end
  req:set_header("X-LCR-Prefix", prefix)
  return req:relay("sip:" .. number .. "@" .. gw)
end
