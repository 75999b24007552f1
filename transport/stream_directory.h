// Which worker holds the stream connection (TCP/TLS) to a peer, for the whole group. Private to
// transport/.
//
// A worker owns the connections it accepted or opened (DESIGN.md "Threading"), and a message
// for a peer normally reaches the connection through the ConnectionId the binding or the
// transaction carries. A request whose target is only an address does not: an ACK or BYE
// that follows a Contact (a UA over TCP puts its connection's local port there, where it
// accepts nothing) may be sent by a worker that does not hold that UA's connection. RFC 3261
// §18 and RFC 5626 want it on the existing connection, so on a miss of its own table a worker
// asks here and hands the send to the owner.
//
// Written when a connection opens or closes, read only on a worker's local miss; never on
// the path of a message that has its connection. One mutex, held for a hash-map operation.
#pragma once
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "core/address.h"

namespace sb::transport::detail {

// A stream peer: the transport and the far end's address.
struct StreamKey {
  core::Protocol protocol;
  core::Endpoint endpoint;
  bool operator==(const StreamKey& o) const {
    return protocol == o.protocol && endpoint == o.endpoint;
  }
};
struct StreamKeyHash {
  size_t operator()(const StreamKey& k) const {
    return k.endpoint.hash() ^ static_cast<size_t>(k.protocol);
  }
};

class StreamDirectory {
 public:
  void add(core::Protocol protocol, const core::Endpoint& remote, core::ConnectionId id) {
    std::lock_guard lock(mu_);
    map_[Key{protocol, remote}] = id;
  }
  // Forgets the entry only when it still names `id` (a newer connection to the same peer
  // may have replaced it).
  void remove(core::Protocol protocol, const core::Endpoint& remote, core::ConnectionId id) {
    std::lock_guard lock(mu_);
    auto it = map_.find(Key{protocol, remote});
    if (it != map_.end() && it->second == id) map_.erase(it);
  }
  std::optional<core::ConnectionId> find(core::Protocol protocol,
                                         const core::Endpoint& remote) const {
    std::lock_guard lock(mu_);
    auto it = map_.find(Key{protocol, remote});
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }

 private:
  using Key = StreamKey;
  mutable std::mutex mu_;
  std::unordered_map<Key, core::ConnectionId, StreamKeyHash> map_;
};

}  // namespace sb::transport::detail
