-- scripts/default.lua: Switchboard's shipped routing policy.
--
-- What it does:
--   * Trusted sources (config "security.trusted"; the shipped config trusts loopback only)
--     register and call without credentials. Every other source must authenticate with
--     digest (config "auth"): 401 for REGISTER, 407 for other requests. Without config
--     "auth" nobody outside the trusted networks can register or call: 403.
--   * REGISTER for one of our domains: the registrar saves the bindings (an authenticated
--     user only its own AORs); for any other domain: 403 (we are nobody else's registrar).
--   * A request inside a dialog (To has a tag): relayed along its Route set, when it comes
--     from a trusted source or carries our own Route (a dialog we Record-Routed); else 403.
--   * OPTIONS addressed to the proxy itself (no user part): 200.
--   * A request for a user of one of our domains: relayed to the contacts the user
--     registered (forking by q: highest q first, equal q in parallel), 404 when none.
--   * A request for a foreign domain: relayed only for trusted or authenticated sources;
--     from anyone else 403. Switchboard is not an open relay.
--   * When every branch failed: the best response goes back to the caller unchanged.
--
-- Copy this file to start your own policy and point config "script.path" at the copy.
-- docs/lua-api.md describes every function used here, docs/security.md the trust model. The
-- script is reloaded with `switchboard ctl reload` (or SIGHUP); a copy that does not compile
-- is refused and the running one stays in place.

-- How a user's contacts are forked (see req:relay below); made once, when the script loads,
-- rather than as a new table for every call.
local FORK_BY_Q = {mode = "q"}

-- Requests outside a dialog must be for one of our domains (config "domains").
local function for_us(uri)
  return uri.host ~= nil and config.is_local(uri.host)
end

-- A source outside the trusted networks proves who it is (RFC 3261 §22). Returns the user,
-- or nil once it has decided the answer: a challenge (401 for REGISTER, 407 otherwise; a
-- wrong password gets a new one, RFC 3261 §22.2/§22.3), or 403 when config "auth" is absent.
local function authenticate(req)
  local user, why = auth.verify(req)
  if user then
    return user
  end
  log.debug("untrusted ", req.source.ip, ": ", why)
  if auth.challenge(req) then
    return nil
  end
  req:reply(403, "Authentication Required")
  return nil
end

-- Called once for every new request. It must decide: reply, relay, redirect or
-- registrar.save. Each of those records the decision and returns true, hence `return`.
function on_request(req)
  local trusted = req.trusted

  -- Registration (RFC 3261 §10). The Request-URI names the domain being registered with.
  if req.method == "REGISTER" then
    if not for_us(req.uri) then
      return req:reply(403, "Not Our Domain")
    end
    if not trusted and not authenticate(req) then
      return true
    end
    return registrar.save(req)
  end

  -- Requests within a dialog (BYE, re-INVITE, ACK to a 2xx, ...) follow the Route set the
  -- dialog established; the proxy core has already consumed our own Route entry. A To tag
  -- alone proves nothing: without our Route only trusted sources are relayed.
  if req:in_dialog() then
    if trusted or req:routed_by_us() then
      return req:relay()
    end
    return req:reply(403, "Not a relay for this domain")
  end

  local local_domain = for_us(req.uri)

  -- Not an open relay: an untrusted source asking for a foreign domain on behalf of a
  -- foreign user has nobody to authenticate as.
  if not local_domain and not trusted and not for_us(req.from.uri) then
    return req:reply(403, "Not a relay for this domain")
  end

  -- Addressed to the proxy itself rather than to a user: answer keep-alive OPTIONS. (The
  -- proxy core already answers these before the script runs; this keeps the script harmless
  -- if that ever changes.)
  if local_domain and req.uri.user == nil then
    if req.method == "OPTIONS" then
      return req:reply(200)
    end
    return req:reply(404, "Not Found")
  end

  -- Calls and other requests from outside the trusted networks must authenticate (407).
  if not trusted and not authenticate(req) then
    return true
  end

  -- Stay on the signalling path of calls we set up, so that the BYE comes through us too.
  if req.method == "INVITE" then
    req:record_route()
  end

  -- A foreign domain, for a trusted or authenticated source: to its servers (RFC 3263).
  if not local_domain then
    return req:relay()
  end

  -- The user's registered contacts, best first. With the cluster backend (docs/cluster.md)
  -- a user this node has not seen is read from Redis first (the request waits); when Redis
  -- does not answer in time the lookup fails and the caller gets 500.
  local contacts, err = location.lookup(req.uri)
  if contacts == nil then
    log.error("location: ", err)
    return req:reply(500, "Location Service Unavailable")
  end
  if #contacts == 0 then
    return req:reply(404, "Not Found")
  end

  -- Fork by q (RFC 3261 §16.6): one q-group after another, highest q first; the contacts
  -- that share a q ring in parallel.
  return req:relay(contacts, FORK_BY_Q)
end

-- Called when every branch of a relayed request failed. Without a decision the best
-- response (RFC 3261 §16.7) is sent to the caller. A typical extension is voicemail:
--
--   if best.status == 486 or best.status == 408 or best.status == 480 then
--     return req:relay("sip:voicemail@" .. req.uri.host)
--   end
function on_failure(req, best)
end
