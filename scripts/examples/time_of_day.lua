-- scripts/examples/time_of_day.lua: office hours routing.
--
-- What it does:
--   * Calls (INVITE) to the company number OFFICE_NUMBER ring the office phone during
--     business hours (Monday to Friday, 09:00 to 17:59 local time) and go to voicemail
--     otherwise. If the office phone does not answer (busy, no answer, unavailable), the
--     call goes to voicemail too.
--   * Everything else is routed as in scripts/default.lua.
--
-- The clock is the global function now(), which returns os.date("*t"); a test (or a
-- script that wraps this one) can replace it to pretend it is another time.

OFFICE_NUMBER = "sales"
OFFICE_UA = "sip:office-phone@pbx.example.com"
VOICEMAIL = "sip:vm-sales@voicemail.example.com"

function now()
  return os.date("*t")
end

-- wday: 1 = Sunday ... 7 = Saturday (os.date).
function business_hours(t)
  return t.wday >= 2 and t.wday <= 6 and t.hour >= 9 and t.hour < 18
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
  if not for_us(req.uri) then return req:reply(403, "Not a relay for this domain") end
  if req.method == "INVITE" then req:record_route() end

  if req.method == "INVITE" and req.uri.user == OFFICE_NUMBER then
    if business_hours(now()) then
      return req:relay(OFFICE_UA, {timeout = 25000})
    end
    return req:relay(VOICEMAIL)
  end

  local contacts = location.lookup(req.uri)
  if #contacts == 0 then return req:reply(404, "Not Found") end
  return req:relay(contacts, {mode = "q"})
end

local function tried(best, uri)
  for _, u in ipairs(best.attempted) do
    if u == uri then return true end
  end
  return false
end

-- The office phone was busy or did not answer: voicemail (once: if voicemail itself
-- failed, the caller gets that failure).
function on_failure(req, best)
  if req.method == "INVITE" and req.uri.user == OFFICE_NUMBER and not tried(best, VOICEMAIL)
      and (best.status == 486 or best.status == 408 or best.status == 480) then
    return req:relay(VOICEMAIL)
  end
end
