// The system user database (passwd and group, through NSS) as far as the UID pool cares:
// which IDs in the dynamic range belong to somebody else. Slow (NSS costs ~110 us per miss on
// Debian's "files systemd"), so it is enumerated at start and whenever /etc/passwd or /etc/group
// change, never per connection.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace superd::uid_pool::userdb {

// Every UID of a user and GID of a group within [lo, hi] (may repeat).
std::vector<uint32_t> ids_in_range(uint32_t lo, uint32_t hi);
// Up to `max` descriptions like "user nobody (65534)" of entries within [lo, hi].
std::vector<std::string> first_clashes(uint32_t lo, uint32_t hi, size_t max);

}  // namespace superd::uid_pool::userdb

// Called by its short name across superd (userdb::...); it lives in uid_pool/.
namespace superd {
namespace userdb = uid_pool::userdb;
}  // namespace superd
