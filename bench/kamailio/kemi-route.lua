-- Switchboard bench: Kamailio's request route in Lua (KEMI), loaded by kamailio-kemi.cfg.
-- The same decisions, in the same order, as request_route in kamailio-native.cfg.

local function forward()
  if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
end

local function in_dialog()
  if KSR.rr.loose_route() > 0 then
    forward()
    return
  end
  -- an ACK for a negative final reply belongs to its INVITE transaction
  if KSR.is_ACK() then
    if KSR.tm.t_check_trans() > 0 then forward() end
    return
  end
  KSR.sl.sl_send_reply(404, "Not Here")
end

function ksr_request_route()
  if KSR.maxfwd.process_maxfwd(70) < 0 then
    KSR.sl.sl_send_reply(483, "Too Many Hops")
    return 1
  end
  if KSR.sanity ~= nil and KSR.sanity.sanity_check(17895, 7) < 0 then
    return 1
  end

  -- a CANCEL goes with the INVITE transaction it cancels, or nowhere
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then forward() end
    return 1
  end

  -- retransmission of a request tm already has: tm answers or absorbs it
  if not KSR.is_ACK() then
    if KSR.tmx.t_precheck_trans() > 0 then
      KSR.tm.t_check_trans()
      return 1
    end
    if KSR.tm.t_check_trans() == 0 then return 1 end
  end

  if KSR.siputils.has_totag() > 0 then
    in_dialog()
    return 1
  end

  KSR.hdr.remove("Route")

  if KSR.is_REGISTER() then
    if KSR.registrar.save("location", 0) < 0 then KSR.sl.sl_reply_error() end
    return 1
  end

  if KSR.is_INVITE() then KSR.rr.record_route() end

  if KSR.registrar.lookup("location") < 0 then
    KSR.sl.sl_send_reply(404, "Not Found")
    return 1
  end
  forward()
  return 1
end
