-- scripts/default.lua: Switchboard's shipped routing policy.
--
-- What it does:
--   * REGISTER for one of our domains: the registrar saves the bindings; for any other
--     domain: 403 (we are nobody else's registrar).
--   * A request inside a dialog (To has a tag): relayed along its Route set.
--   * OPTIONS addressed to the proxy itself (no user part): 200.
--   * A request for a user of one of our domains: relayed to the contacts the user
--     registered (forking by q: highest q first, equal q in parallel), 404 when none.
--   * Anything addressed to a foreign domain: 403. Switchboard is not an open relay.
--   * When every branch failed: the best response goes back to the caller unchanged.
--
-- Copy this file to start your own policy and point config "script.path" at the copy.
-- docs/lua-api.md describes every function used here. The script is reloaded with
-- `switchboard ctl reload` (or SIGHUP); a copy that does not compile is refused and the
-- running one stays in place.

-- Requests outside a dialog must be for one of our domains (config "domains").
local function for_us(uri)
  return uri.host ~= nil and config.is_local(uri.host)
end

-- Called once for every new request. It must decide: reply, relay, redirect or
-- registrar.save. Each of those records the decision and returns true, hence `return`.
function on_request(req)
  -- Registration (RFC 3261 §10). The Request-URI names the domain being registered with.
  if req.method == "REGISTER" then
    if not for_us(req.uri) then
      return req:reply(403, "Not Our Domain")
    end
    return registrar.save(req)
  end

  -- Requests within a dialog (BYE, re-INVITE, ACK to a 2xx, ...) follow the Route set the
  -- dialog established; the proxy core has already consumed our own Route entry.
  if req:in_dialog() then
    return req:relay()
  end

  -- Not an open relay: only requests for our own domains go any further.
  if not for_us(req.uri) then
    return req:reply(403, "Not a relay for this domain")
  end

  -- Addressed to the proxy itself rather than to a user: answer keep-alive OPTIONS. (The
  -- proxy core already answers these before the script runs; this keeps the script harmless
  -- if that ever changes.)
  if req.uri.user == nil then
    if req.method == "OPTIONS" then
      return req:reply(200)
    end
    return req:reply(404, "Not Found")
  end

  -- Stay on the signalling path of calls we set up, so that the BYE comes through us too.
  if req.method == "INVITE" then
    req:record_route()
  end

  -- The user's registered contacts, best first.
  local contacts = location.lookup(req.uri)
  if contacts == nil or #contacts == 0 then
    return req:reply(404, "Not Found")
  end

  -- Fork by q (RFC 3261 §16.6): one q-group after another, highest q first; the contacts
  -- that share a q ring in parallel.
  return req:relay(contacts, {mode = "q"})
end

-- Called when every branch of a relayed request failed. Without a decision the best
-- response (RFC 3261 §16.7) is sent to the caller. A typical extension is voicemail:
--
--   if best.status == 486 or best.status == 408 or best.status == 480 then
--     return req:relay("sip:voicemail@" .. req.uri.host)
--   end
function on_failure(req, best)
end
