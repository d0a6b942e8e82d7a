//! The Local Authorization List, the Authorization Cache and the local decision on an idTag
//! (OCPP 1.6 §3.5 "Local Authorization & Offline Behavior", §5.15 SendLocalList, §5.9
//! GetLocalListVersion, §5.4 ClearCache).
//!
//! [`AuthState::decide`] answers "may this idTag charge without asking the CSMS?" from the
//! first store that knows it, each consulted only when its key enables it:
//!
//! ```text
//!   idTag ─► Local Authorization List  (if LocalAuthListEnabled; wins, §3.5.1)
//!             │ not listed
//!             ▼
//!            Authorization Cache       (if AuthorizationCacheEnabled, §3.5.2)
//!             │ not cached
//!             ▼
//!            unknown                   (offline: AllowOfflineTxForUnknownId, §3.5.3)
//! ```
//!
//! - Online, a valid Accepted entry is taken at once only with LocalPreAuthorize; anything
//!   else asks the CSMS.
//! - Offline, with LocalAuthorizeOffline a valid Accepted entry is taken and any other
//!   known entry refused; without it every known idTag is refused. An unknown idTag is
//!   taken only with AllowOfflineTxForUnknownId.
//! - An entry whose expiryDate is before `now` counts as Expired; when the wall clock is
//!   unknown (`now` is `None`) nothing expires.
//! - The cache keeps at most `cache_capacity` entries, evicting first those that do not
//!   allow charging (not Accepted, or expired), then the least recently used.
//!
//! idTags are CiString20, compared without regard to ASCII case ([`TagKey`]). Every method
//! that changes the state returns the [`AuthChange`]s it made; the caller persists them in
//! one atomic journal write before acting on the result (answering the CSMS, starting a
//! charge). Applying them with [`AuthState::apply`] to the last persisted state rebuilds
//! the live one. The module reads no clock and no file: wall-clock time comes in as `now`,
//! and cache recency is a use counter.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::super::messages::central_system::{
    AcceptedRejected, SendLocalListRequest, UpdateStatus, UpdateType,
};
use super::super::messages::{AuthorizationStatus, IdTagInfo};
use super::super::types::{CiString20, DateTime};

/// An idTag as a map key, in ASCII upper case, because OCPP compares CiStrings without
/// regard to case: "abc" and "ABC" are one entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagKey(String);

impl TagKey {
    /// The key of `id_tag`.
    pub fn new(id_tag: &CiString20) -> Self {
        Self::from(id_tag.as_str())
    }

    /// The idTag in upper case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for TagKey {
    fn from(id_tag: &str) -> Self {
        Self(id_tag.to_ascii_uppercase())
    }
}

impl fmt::Display for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One Authorization Cache entry (§3.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// What the CSMS last said about the idTag.
    pub info: IdTagInfo,
    /// When the entry was last stored or used, as a use count (larger is more recent), so
    /// eviction can drop the least recently used without a clock.
    pub last_used: u64,
}

/// Everything the charge point remembers about idTags; persisted by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthState {
    /// The listVersion of the last accepted SendLocalList; 0 before any.
    pub list_version: i32,
    /// The Local Authorization List (§3.5.1), changed only by SendLocalList.
    pub list: BTreeMap<TagKey, IdTagInfo>,
    /// The Authorization Cache (§3.5.2), filled from the CSMS's answers.
    pub cache: BTreeMap<TagKey, CacheEntry>,
}

/// One durable change to an [`AuthState`], to be persisted before it is acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChange {
    /// The whole list replaced: lists are small (LocalAuthListMaxLength), and one record is
    /// trivially atomic.
    PutList {
        /// The new listVersion.
        version: i32,
        /// The new list.
        entries: BTreeMap<TagKey, IdTagInfo>,
    },
    /// A cache entry added or replaced.
    PutCacheEntry(TagKey, CacheEntry),
    /// A cache entry evicted.
    DeleteCacheEntry(TagKey),
    /// The cache emptied by ClearCache.
    ClearCache,
}

/// The configuration keys (§9.1, §9.2) authorisation depends on, read by the caller, plus
/// the cache's size, which no key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthKeys {
    /// LocalAuthListEnabled: whether the list is consulted and SendLocalList is taken.
    pub local_auth_list_enabled: bool,
    /// AuthorizationCacheEnabled: whether the cache is consulted and filled.
    pub authorization_cache_enabled: bool,
    /// LocalPreAuthorize: whether a valid local entry starts a charge without asking an
    /// online CSMS.
    pub local_pre_authorize: bool,
    /// LocalAuthorizeOffline: whether a valid local entry starts a charge while offline.
    pub local_authorize_offline: bool,
    /// AllowOfflineTxForUnknownId: whether an unknown idTag may charge while offline.
    pub allow_offline_tx_for_unknown_id: bool,
    /// LocalAuthListMaxLength: the most entries the list may hold.
    pub local_auth_list_max_length: usize,
    /// SendLocalListMaxLength: the most entries one SendLocalList may carry.
    pub send_local_list_max_length: usize,
    /// The most entries the cache holds before it evicts.
    pub cache_capacity: usize,
}

/// Which rule decided a [`LocalDecision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthSource {
    /// An entry of the Local Authorization List.
    LocalList,
    /// An entry of the Authorization Cache.
    Cache,
    /// Offline, and neither store knows the idTag: AllowOfflineTxForUnknownId decided.
    OfflineUnknown,
    /// Offline, and LocalAuthorizeOffline forbids using the entry that knows the idTag.
    Offline,
}

/// What the charge point may do with an idTag without the CSMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalDecision {
    /// Charge now.
    Accepted {
        /// The entry's info; status Accepted without expiry for an unknown idTag.
        info: IdTagInfo,
        /// The rule that allowed it.
        source: AuthSource,
    },
    /// Refuse.
    Rejected {
        /// The entry that refused it (status Expired once its expiryDate passed); `None`
        /// when no entry was used.
        info: Option<IdTagInfo>,
        /// The rule that refused it.
        source: AuthSource,
    },
    /// Send Authorize.req (or start the transaction) and follow the CSMS's answer.
    AskCsms,
}

/// Whether `info`'s expiryDate is before `now`; never when the wall clock is unknown.
fn is_expired(info: &IdTagInfo, now: Option<&DateTime>) -> bool {
    match (&info.expiry_date, now) {
        (Some(expiry), Some(now)) => expiry.unix_millis() < now.unix_millis(),
        _ => false,
    }
}

/// Whether `info` allows charging at `now`.
fn is_valid(info: &IdTagInfo, now: Option<&DateTime>) -> bool {
    info.status == AuthorizationStatus::Accepted && !is_expired(info, now)
}

/// `info` as it stands at `now`: status Expired once its expiryDate passed.
fn effective(info: &IdTagInfo, now: Option<&DateTime>) -> IdTagInfo {
    let mut info = info.clone();
    if is_expired(&info, now) {
        info.status = AuthorizationStatus::Expired;
    }
    info
}

impl AuthState {
    /// Applies one change, as [`Self::record`], [`Self::touch`], [`Self::send_local_list`]
    /// and [`Self::clear_cache`] did; used to rebuild the state from persisted changes.
    pub fn apply(&mut self, change: AuthChange) {
        match change {
            AuthChange::PutList { version, entries } => {
                self.list_version = version;
                self.list = entries;
            }
            AuthChange::PutCacheEntry(key, entry) => {
                self.cache.insert(key, entry);
            }
            AuthChange::DeleteCacheEntry(key) => {
                self.cache.remove(&key);
            }
            AuthChange::ClearCache => self.cache.clear(),
        }
    }

    /// The answer to GetLocalListVersion (§5.9): -1 when lists are disabled, 0 when the
    /// list is empty, else the version of the last update.
    pub fn list_version(&self, keys: AuthKeys) -> i32 {
        if !keys.local_auth_list_enabled {
            -1
        } else if self.list.is_empty() {
            0
        } else {
            self.list_version
        }
    }

    /// The entry that speaks for `key`: the list's before the cache's (§3.5.1), each only
    /// when enabled.
    fn lookup(&self, key: &TagKey, keys: AuthKeys) -> Option<(&IdTagInfo, AuthSource)> {
        let listed = keys
            .local_auth_list_enabled
            .then(|| self.list.get(key))
            .flatten()
            .map(|info| (info, AuthSource::LocalList));
        listed.or_else(|| {
            keys.authorization_cache_enabled
                .then(|| self.cache.get(key))
                .flatten()
                .map(|entry| (&entry.info, AuthSource::Cache))
        })
    }

    /// Decides locally on `id_tag` (§3.5); see the module doc for the rules. Pure: when an
    /// Accepted comes from the cache, call [`Self::touch`] to mark the entry used.
    pub fn decide(
        &self,
        id_tag: &CiString20,
        online: bool,
        now: Option<&DateTime>,
        keys: AuthKeys,
    ) -> LocalDecision {
        let known = self.lookup(&TagKey::new(id_tag), keys);
        let Some((info, source)) = known else {
            return if online {
                LocalDecision::AskCsms
            } else if keys.allow_offline_tx_for_unknown_id {
                LocalDecision::Accepted {
                    info: IdTagInfo {
                        expiry_date: None,
                        parent_id_tag: None,
                        status: AuthorizationStatus::Accepted,
                    },
                    source: AuthSource::OfflineUnknown,
                }
            } else {
                LocalDecision::Rejected {
                    info: None,
                    source: AuthSource::OfflineUnknown,
                }
            };
        };
        let usable = if online {
            keys.local_pre_authorize
        } else {
            keys.local_authorize_offline
        };
        let info = effective(info, now);
        match (usable, info.status == AuthorizationStatus::Accepted, online) {
            (true, true, _) => LocalDecision::Accepted { info, source },
            (_, _, true) => LocalDecision::AskCsms,
            (true, false, false) => LocalDecision::Rejected {
                info: Some(info),
                source,
            },
            (false, _, false) => LocalDecision::Rejected {
                info: None,
                source: AuthSource::Offline,
            },
        }
    }

    /// The next use count: above every entry's, so the newest use is always the largest.
    fn next_use(&self) -> u64 {
        self.cache
            .values()
            .map(|entry| entry.last_used)
            .max()
            .map_or(1, |last| last.saturating_add(1))
    }

    /// Marks `id_tag`'s cache entry as just used, so eviction keeps it longest. `None` when
    /// it is not cached or already the most recent.
    pub fn touch(&mut self, id_tag: &CiString20) -> Option<AuthChange> {
        let key = TagKey::new(id_tag);
        let next = self.next_use();
        let entry = self.cache.get(&key)?;
        if entry.last_used.saturating_add(1) == next {
            return None;
        }
        let change = AuthChange::PutCacheEntry(
            key,
            CacheEntry {
                info: entry.info.clone(),
                last_used: next,
            },
        );
        self.apply(change.clone());
        Some(change)
    }

    /// The entry to evict first: one that does not allow charging at `now` (not Accepted,
    /// or expired), else the least recently used.
    fn eviction_victim(&self, now: Option<&DateTime>) -> Option<TagKey> {
        self.cache
            .iter()
            .min_by_key(|(_, entry)| (is_valid(&entry.info, now), entry.last_used))
            .map(|(key, _)| key.clone())
    }

    /// Caches what the CSMS said about `id_tag` in an Authorize, StartTransaction or
    /// StopTransaction confirmation (§3.5.2), evicting beyond `cache_capacity`. Nothing
    /// changes when the cache is disabled or the idTag is in the (enabled) list, whose
    /// entries are not cached. Returns the changes, already applied.
    pub fn record(
        &mut self,
        id_tag: &CiString20,
        info: &IdTagInfo,
        now: Option<&DateTime>,
        keys: AuthKeys,
    ) -> Vec<AuthChange> {
        let key = TagKey::new(id_tag);
        if !keys.authorization_cache_enabled
            || (keys.local_auth_list_enabled && self.list.contains_key(&key))
        {
            return Vec::new();
        }
        let was_cached = self.cache.contains_key(&key);
        let put = AuthChange::PutCacheEntry(
            key.clone(),
            CacheEntry {
                info: info.clone(),
                last_used: self.next_use(),
            },
        );
        self.apply(put.clone());
        let mut changes = vec![put];
        while self.cache.len() > keys.cache_capacity {
            let Some(victim) = self.eviction_victim(now) else {
                break;
            };
            self.cache.remove(&victim);
            if victim == key && !was_cached {
                // The newcomer is the least useful entry: it was never stored at all.
                changes.remove(0);
            } else {
                changes.push(AuthChange::DeleteCacheEntry(victim));
            }
        }
        changes
    }

    /// Carries out SendLocalList (§5.15). On anything but Accepted the state is unchanged
    /// and no change is returned; on Accepted the one [`AuthChange::PutList`], applied.
    pub fn send_local_list(
        &mut self,
        request: &SendLocalListRequest,
        keys: AuthKeys,
    ) -> (UpdateStatus, Vec<AuthChange>) {
        match self.updated_list(request, keys) {
            Ok(entries) => {
                let change = AuthChange::PutList {
                    version: request.list_version,
                    entries,
                };
                self.apply(change.clone());
                (UpdateStatus::Accepted, vec![change])
            }
            Err(status) => (status, Vec::new()),
        }
    }

    /// The list `request` would leave, or why it is refused.
    fn updated_list(
        &self,
        request: &SendLocalListRequest,
        keys: AuthKeys,
    ) -> Result<BTreeMap<TagKey, IdTagInfo>, UpdateStatus> {
        if !keys.local_auth_list_enabled {
            return Err(UpdateStatus::NotSupported);
        }
        let entries = request.local_authorization_list.as_deref().unwrap_or(&[]);
        if entries.len() > keys.send_local_list_max_length {
            return Err(UpdateStatus::Failed);
        }
        // listVersion 0 means "empty" (§5.9), so only a Full update clearing the list may
        // carry it.
        let clears = request.update_type == UpdateType::Full && entries.is_empty();
        if request.list_version < if clears { 0 } else { 1 } {
            return Err(UpdateStatus::Failed);
        }
        let mut seen = BTreeSet::new();
        if !entries.iter().all(|e| seen.insert(TagKey::new(&e.id_tag))) {
            return Err(UpdateStatus::Failed);
        }
        let list = match request.update_type {
            UpdateType::Full => entries
                .iter()
                .map(|e| Some((TagKey::new(&e.id_tag), e.id_tag_info.clone()?)))
                .collect::<Option<BTreeMap<_, _>>>()
                .ok_or(UpdateStatus::Failed)?,
            UpdateType::Differential => {
                if request.list_version <= self.list_version {
                    return Err(UpdateStatus::VersionMismatch);
                }
                let mut list = self.list.clone();
                for entry in entries {
                    let key = TagKey::new(&entry.id_tag);
                    match &entry.id_tag_info {
                        Some(info) => list.insert(key, info.clone()),
                        None => list.remove(&key),
                    };
                }
                list
            }
        };
        if list.len() > keys.local_auth_list_max_length {
            return Err(UpdateStatus::Failed);
        }
        Ok(list)
    }

    /// Carries out ClearCache (§5.4): Rejected when the cache is disabled.
    pub fn clear_cache(&mut self, keys: AuthKeys) -> (AcceptedRejected, Vec<AuthChange>) {
        if !keys.authorization_cache_enabled {
            return (AcceptedRejected::Rejected, Vec::new());
        }
        self.apply(AuthChange::ClearCache);
        (AcceptedRejected::Accepted, vec![AuthChange::ClearCache])
    }
}

#[cfg(test)]
mod tests {
    use super::AuthorizationStatus::{Accepted, Blocked, ConcurrentTx, Expired, Invalid};
    use super::*;
    use crate::ocpp::messages::central_system::AuthorizationData;

    /// The idTag `s`.
    fn tag(s: &str) -> CiString20 {
        CiString20::new(s).unwrap()
    }

    /// A wall-clock time `secs` after 2024-05-01T12:00:00Z.
    fn at(secs: i64) -> DateTime {
        DateTime::from_unix_millis(1_714_564_800_000 + secs * 1000)
    }

    /// An IdTagInfo with `status` and no expiry.
    fn info(status: AuthorizationStatus) -> IdTagInfo {
        IdTagInfo {
            expiry_date: None,
            parent_id_tag: None,
            status,
        }
    }

    /// An IdTagInfo with `status` that expires at `at(secs)`.
    fn info_until(status: AuthorizationStatus, secs: i64) -> IdTagInfo {
        IdTagInfo {
            expiry_date: Some(at(secs)),
            ..info(status)
        }
    }

    /// The configuration defaults (§9.1, §9.2), with a cache of three entries.
    fn keys() -> AuthKeys {
        AuthKeys {
            local_auth_list_enabled: true,
            authorization_cache_enabled: true,
            local_pre_authorize: false,
            local_authorize_offline: true,
            allow_offline_tx_for_unknown_id: false,
            local_auth_list_max_length: 1000,
            send_local_list_max_length: 100,
            cache_capacity: 3,
        }
    }

    /// The defaults changed by `change`.
    fn with(change: impl FnOnce(&mut AuthKeys)) -> AuthKeys {
        let mut keys = keys();
        change(&mut keys);
        keys
    }

    /// The change that caches `info` for `id` at use count `last_used`.
    fn put(id: &str, info: IdTagInfo, last_used: u64) -> AuthChange {
        AuthChange::PutCacheEntry(TagKey::from(id), CacheEntry { info, last_used })
    }

    /// The change that evicts `id`.
    fn delete(id: &str) -> AuthChange {
        AuthChange::DeleteCacheEntry(TagKey::from(id))
    }

    /// A SendLocalList.req; a `None` status leaves the entry without idTagInfo.
    fn request(
        update_type: UpdateType,
        list_version: i32,
        entries: &[(&str, Option<AuthorizationStatus>)],
    ) -> SendLocalListRequest {
        SendLocalListRequest {
            list_version,
            local_authorization_list: Some(
                entries
                    .iter()
                    .map(|(id, status)| AuthorizationData {
                        id_tag: tag(id),
                        id_tag_info: status.map(info),
                    })
                    .collect(),
            ),
            update_type,
        }
    }

    /// A Full SendLocalList.req.
    fn full(version: i32, entries: &[(&str, Option<AuthorizationStatus>)]) -> SendLocalListRequest {
        request(UpdateType::Full, version, entries)
    }

    /// A Differential SendLocalList.req.
    fn diff(version: i32, entries: &[(&str, Option<AuthorizationStatus>)]) -> SendLocalListRequest {
        request(UpdateType::Differential, version, entries)
    }

    /// A state caching A, B and C (oldest first), all Accepted.
    fn abc() -> AuthState {
        cached(&[
            ("A", info(Accepted)),
            ("B", info(Accepted)),
            ("C", info(Accepted)),
        ])
    }

    /// A state whose list (version 1) holds `entries`.
    fn listed(entries: &[(&str, AuthorizationStatus)]) -> AuthState {
        let mut state = AuthState::default();
        let entries: Vec<_> = entries.iter().map(|(id, s)| (*id, Some(*s))).collect();
        let (status, _) = state.send_local_list(&full(1, &entries), keys());
        assert_eq!(status, UpdateStatus::Accepted);
        state
    }

    /// A state whose cache holds `entries`, oldest first.
    fn cached(entries: &[(&str, IdTagInfo)]) -> AuthState {
        let mut state = AuthState::default();
        let keys = with(|k| k.cache_capacity = 100);
        for (id, info) in entries {
            state.record(&tag(id), info, None, keys);
        }
        state
    }

    /// The cached idTags, in key order.
    fn cache_tags(state: &AuthState) -> Vec<&str> {
        state.cache.keys().map(TagKey::as_str).collect()
    }

    /// An offline decision with default keys and an unknown clock.
    fn offline(state: &AuthState, id: &str, keys: AuthKeys) -> LocalDecision {
        state.decide(&tag(id), false, None, keys)
    }

    /// A local Accepted.
    fn accepted(info: IdTagInfo, source: AuthSource) -> LocalDecision {
        LocalDecision::Accepted { info, source }
    }

    /// A local Rejected.
    fn rejected(info: Option<IdTagInfo>, source: AuthSource) -> LocalDecision {
        LocalDecision::Rejected { info, source }
    }

    #[test]
    fn tag_keys_ignore_ascii_case() {
        let key = TagKey::new(&tag("aBc-12"));
        assert_eq!(key, TagKey::from("ABC-12"));
        assert_eq!(key.as_str(), "ABC-12");
        assert_eq!(key.to_string(), "ABC-12");
        assert_ne!(key, TagKey::from("ABC-13"));
    }

    #[test]
    fn the_list_matches_without_regard_to_case() {
        let state = listed(&[("tag1", Accepted)]);
        assert_eq!(
            offline(&state, "TAG1", keys()),
            accepted(info(Accepted), AuthSource::LocalList)
        );
        let mut state = cached(&[("Tag2", info(Blocked))]);
        assert_eq!(
            offline(&state, "tAG2", keys()),
            rejected(Some(info(Blocked)), AuthSource::Cache)
        );
        state.record(&tag("TAG2"), &info(Accepted), None, keys());
        assert_eq!(cache_tags(&state), ["TAG2"]);
    }

    #[test]
    fn the_list_takes_precedence_over_the_cache() {
        let mut state = listed(&[("A", Blocked)]);
        state.apply(put("A", info(Accepted), 1));
        assert_eq!(
            offline(&state, "a", keys()),
            rejected(Some(info(Blocked)), AuthSource::LocalList)
        );
        let online = with(|k| k.local_pre_authorize = true);
        assert_eq!(
            state.decide(&tag("A"), true, None, online),
            LocalDecision::AskCsms
        );
        // With the list disabled its entry no longer counts, and the cache speaks.
        let no_list = with(|k| k.local_auth_list_enabled = false);
        assert_eq!(
            offline(&state, "A", no_list),
            accepted(info(Accepted), AuthSource::Cache)
        );
    }

    #[test]
    fn online_without_pre_authorize_always_asks() {
        let mut state = listed(&[("L", Accepted)]);
        state.record(&tag("C"), &info(Accepted), None, keys());
        for id in ["L", "C", "UNKNOWN"] {
            assert_eq!(
                state.decide(&tag(id), true, None, keys()),
                LocalDecision::AskCsms,
                "{id}"
            );
        }
    }

    #[test]
    fn online_pre_authorize_takes_only_valid_accepted_entries() {
        let mut state = listed(&[("L", Accepted), ("LB", Blocked)]);
        state.record(&tag("C"), &info(Accepted), None, keys());
        state.record(&tag("CX"), &info_until(Accepted, 10), None, keys());
        let keys = with(|k| {
            k.local_pre_authorize = true;
            k.allow_offline_tx_for_unknown_id = true;
        });
        let now = Some(at(20));
        let decide = |id| state.decide(&tag(id), true, now.as_ref(), keys);
        assert_eq!(decide("L"), accepted(info(Accepted), AuthSource::LocalList));
        assert_eq!(decide("C"), accepted(info(Accepted), AuthSource::Cache));
        assert_eq!(decide("LB"), LocalDecision::AskCsms);
        assert_eq!(decide("CX"), LocalDecision::AskCsms);
        assert_eq!(decide("UNKNOWN"), LocalDecision::AskCsms);
    }

    #[test]
    fn offline_authorize_takes_accepted_and_refuses_other_known_entries() {
        let state = listed(&[
            ("A", Accepted),
            ("B", Blocked),
            ("E", Expired),
            ("I", Invalid),
            ("C", ConcurrentTx),
        ]);
        assert_eq!(
            offline(&state, "A", keys()),
            accepted(info(Accepted), AuthSource::LocalList)
        );
        for (id, status) in [
            ("B", Blocked),
            ("E", Expired),
            ("I", Invalid),
            ("C", ConcurrentTx),
        ] {
            assert_eq!(
                offline(&state, id, keys()),
                rejected(Some(info(status)), AuthSource::LocalList),
                "{id}"
            );
        }
    }

    #[test]
    fn without_local_authorize_offline_known_tags_are_refused() {
        let mut state = listed(&[("L", Accepted)]);
        state.record(&tag("C"), &info(Accepted), None, keys());
        let keys = with(|k| {
            k.local_authorize_offline = false;
            k.allow_offline_tx_for_unknown_id = true;
        });
        for id in ["L", "C"] {
            assert_eq!(
                offline(&state, id, keys),
                rejected(None, AuthSource::Offline),
                "{id}"
            );
        }
        assert_eq!(
            offline(&state, "UNKNOWN", keys),
            accepted(info(Accepted), AuthSource::OfflineUnknown)
        );
    }

    #[test]
    fn unknown_tags_offline_follow_allow_offline_tx_for_unknown_id() {
        let state = listed(&[("L", Accepted)]);
        assert_eq!(
            offline(&state, "UNKNOWN", keys()),
            rejected(None, AuthSource::OfflineUnknown)
        );
        let allow = with(|k| k.allow_offline_tx_for_unknown_id = true);
        assert_eq!(
            offline(&state, "UNKNOWN", allow),
            accepted(info(Accepted), AuthSource::OfflineUnknown)
        );
        // Online, an unknown idTag is the CSMS's to decide.
        assert_eq!(
            state.decide(&tag("UNKNOWN"), true, None, allow),
            LocalDecision::AskCsms
        );
    }

    #[test]
    fn entries_expire_only_against_a_known_clock() {
        let mut state = AuthState::default();
        state.apply(AuthChange::PutList {
            version: 1,
            entries: BTreeMap::from([(TagKey::from("L"), info_until(Accepted, 100))]),
        });
        state.record(&tag("C"), &info_until(Accepted, 100), None, keys());
        let decide =
            |id, now: Option<DateTime>| state.decide(&tag(id), false, now.as_ref(), keys());
        for (id, source) in [("L", AuthSource::LocalList), ("C", AuthSource::Cache)] {
            let valid = accepted(info_until(Accepted, 100), source);
            assert_eq!(decide(id, None), valid, "{id} without clock");
            assert_eq!(decide(id, Some(at(50))), valid, "{id} before expiry");
            assert_eq!(decide(id, Some(at(100))), valid, "{id} at expiry");
            assert_eq!(
                decide(id, Some(at(101))),
                rejected(Some(info_until(Expired, 100)), source),
                "{id} after expiry"
            );
        }
    }

    #[test]
    fn a_disabled_cache_is_neither_consulted_nor_filled() {
        let mut state = cached(&[("C", info(Accepted))]);
        let before = state.clone();
        let no_cache = with(|k| k.authorization_cache_enabled = false);
        assert_eq!(
            offline(&state, "C", no_cache),
            rejected(None, AuthSource::OfflineUnknown)
        );
        let pre = AuthKeys {
            local_pre_authorize: true,
            ..no_cache
        };
        assert_eq!(
            state.decide(&tag("C"), true, None, pre),
            LocalDecision::AskCsms
        );
        assert_eq!(state.record(&tag("D"), &info(Accepted), None, no_cache), []);
        assert_eq!(state, before);
    }

    #[test]
    fn a_disabled_list_is_neither_consulted_nor_updated() {
        let mut state = listed(&[("L", Accepted)]);
        let before = state.clone();
        let no_list = with(|k| k.local_auth_list_enabled = false);
        assert_eq!(
            offline(&state, "L", no_list),
            rejected(None, AuthSource::OfflineUnknown)
        );
        let update = diff(2, &[("M", Some(Accepted))]);
        assert_eq!(
            state.send_local_list(&update, no_list),
            (UpdateStatus::NotSupported, vec![])
        );
        assert_eq!(state, before);
        assert_eq!(state.list_version(no_list), -1);
    }

    #[test]
    fn record_skips_tags_in_the_list() {
        let mut state = listed(&[("L", Accepted)]);
        assert_eq!(state.record(&tag("l"), &info(Blocked), None, keys()), []);
        assert!(state.cache.is_empty());
        // A disabled list does not speak for its idTags, so they are cached.
        let no_list = with(|k| k.local_auth_list_enabled = false);
        let changes = state.record(&tag("l"), &info(Blocked), None, no_list);
        assert_eq!(changes, [put("L", info(Blocked), 1)]);
    }

    #[test]
    fn record_replaces_an_entry_and_makes_it_most_recent() {
        let mut state = cached(&[("A", info(Accepted)), ("B", info(Accepted))]);
        let changes = state.record(&tag("A"), &info(Blocked), None, keys());
        assert_eq!(changes, [put("A", info(Blocked), 3)]);
        assert_eq!(state.cache[&TagKey::from("A")].info, info(Blocked));
        assert_eq!(state.cache.len(), 2);
    }

    #[test]
    fn eviction_drops_refused_entries_first_then_the_least_recently_used() {
        let mut state = cached(&[
            ("A", info(Accepted)),
            ("B", info(Blocked)),
            ("C", info(Accepted)),
        ]);
        // B is newer than A, but does not allow charging.
        let changes = state.record(&tag("D"), &info(Accepted), None, keys());
        assert_eq!(changes[1..], [delete("B")]);
        assert_eq!(cache_tags(&state), ["A", "C", "D"]);
        // All allow charging: the oldest goes.
        let changes = state.record(&tag("E"), &info(Accepted), None, keys());
        assert_eq!(changes[1..], [delete("A")]);
        // Using C makes D the oldest.
        assert!(state.touch(&tag("C")).is_some());
        let changes = state.record(&tag("F"), &info(Accepted), None, keys());
        assert_eq!(changes[1..], [delete("D")]);
        assert_eq!(cache_tags(&state), ["C", "E", "F"]);
    }

    #[test]
    fn eviction_drops_expired_entries_first_only_against_a_known_clock() {
        let base = cached(&[("OLD", info(Accepted)), ("X", info_until(Accepted, 10))]);
        let keys = with(|k| k.cache_capacity = 2);
        let mut state = base.clone();
        state.record(&tag("NEW"), &info(Accepted), Some(&at(20)), keys);
        assert_eq!(cache_tags(&state), ["NEW", "OLD"]);
        let mut state = base;
        state.record(&tag("NEW"), &info(Accepted), None, keys);
        assert_eq!(cache_tags(&state), ["NEW", "X"]);
    }

    #[test]
    fn a_refused_newcomer_to_a_full_cache_is_not_stored() {
        let mut state = abc();
        let before = state.clone();
        assert_eq!(state.record(&tag("D"), &info(Blocked), None, keys()), []);
        assert_eq!(state, before);
    }

    #[test]
    fn shrinking_the_cache_evicts_down_to_capacity() {
        let mut state = abc();
        let keys = with(|k| k.cache_capacity = 1);
        let changes = state.record(&tag("B"), &info(Invalid), None, keys);
        // B was cached before, so its replacement and its eviction are both recorded.
        assert_eq!(changes[1..], [delete("B"), delete("A"),]);
        assert_eq!(cache_tags(&state), ["C"]);
        let mut replayed = abc();
        changes.into_iter().for_each(|c| replayed.apply(c));
        assert_eq!(replayed, state);
    }

    #[test]
    fn touch_makes_an_entry_most_recent() {
        let mut state = cached(&[("A", info(Accepted)), ("B", info(Accepted))]);
        assert_eq!(state.touch(&tag("B")), None, "already the most recent");
        assert_eq!(state.touch(&tag("UNKNOWN")), None);
        let change = state.touch(&tag("a"));
        assert_eq!(change, Some(put("A", info(Accepted), 3)));
        assert_eq!(state.cache[&TagKey::from("A")].last_used, 3);
    }

    #[test]
    fn a_full_update_replaces_the_list() {
        let mut state = listed(&[("OLD", Accepted)]);
        let update = full(3, &[("A", Some(Accepted)), ("b", Some(Blocked))]);
        let (status, changes) = state.send_local_list(&update, keys());
        assert_eq!(status, UpdateStatus::Accepted);
        let entries = BTreeMap::from([
            (TagKey::from("A"), info(Accepted)),
            (TagKey::from("B"), info(Blocked)),
        ]);
        assert_eq!(
            changes,
            [AuthChange::PutList {
                version: 3,
                entries: entries.clone()
            }]
        );
        assert_eq!(state.list, entries);
        assert_eq!(state.list_version(keys()), 3);
    }

    #[test]
    fn an_empty_full_update_clears_the_list_with_any_version() {
        let mut state = listed(&[("A", Accepted)]);
        let clear = SendLocalListRequest {
            list_version: 0,
            local_authorization_list: None,
            update_type: UpdateType::Full,
        };
        assert_eq!(
            state.send_local_list(&clear, keys()).0,
            UpdateStatus::Accepted
        );
        assert!(state.list.is_empty());
        assert_eq!(state.list_version(keys()), 0);

        let mut state = listed(&[("A", Accepted)]);
        let clear = full(5, &[]);
        assert_eq!(
            state.send_local_list(&clear, keys()).0,
            UpdateStatus::Accepted
        );
        assert!(state.list.is_empty());
        // An empty list reports version 0 (§5.9) but remembers 5 against stale updates.
        assert_eq!(state.list_version(keys()), 0);
        let stale = diff(4, &[("A", Some(Accepted))]);
        assert_eq!(
            state.send_local_list(&stale, keys()).0,
            UpdateStatus::VersionMismatch
        );
    }

    #[test]
    fn a_differential_update_upserts_and_removes() {
        let mut state = listed(&[("A", Accepted), ("B", Accepted)]);
        let update = diff(
            2,
            &[("a", Some(Blocked)), ("B", None), ("C", Some(Accepted))],
        );
        let (status, changes) = state.send_local_list(&update, keys());
        assert_eq!(status, UpdateStatus::Accepted);
        let entries = BTreeMap::from([
            (TagKey::from("A"), info(Blocked)),
            (TagKey::from("C"), info(Accepted)),
        ]);
        assert_eq!(state.list, entries);
        assert_eq!(state.list_version(keys()), 2);
        assert_eq!(
            changes,
            [AuthChange::PutList {
                version: 2,
                entries
            }]
        );
    }

    #[test]
    fn a_differential_update_must_raise_the_version() {
        let mut state = listed(&[("A", Accepted)]);
        state.send_local_list(&full(3, &[("A", Some(Accepted))]), keys());
        let before = state.clone();
        for version in [2, 3] {
            let update = diff(version, &[("B", Some(Accepted))]);
            assert_eq!(
                state.send_local_list(&update, keys()),
                (UpdateStatus::VersionMismatch, vec![]),
                "version {version}"
            );
        }
        assert_eq!(state, before);
        // A Full update is not held to the version order.
        let full = full(2, &[("B", Some(Accepted))]);
        assert_eq!(
            state.send_local_list(&full, keys()).0,
            UpdateStatus::Accepted
        );
        assert_eq!(state.list_version(keys()), 2);
    }

    #[test]
    fn bad_updates_fail_and_change_nothing() {
        let state = listed(&[("A", Accepted), ("B", Accepted)]);
        let small = with(|k| {
            k.send_local_list_max_length = 2;
            k.local_auth_list_max_length = 3;
        });
        let cases = [
            (
                "more entries than SendLocalListMaxLength",
                full(
                    2,
                    &[
                        ("X", Some(Accepted)),
                        ("Y", Some(Accepted)),
                        ("Z", Some(Accepted)),
                    ],
                ),
            ),
            (
                "a list longer than LocalAuthListMaxLength",
                diff(2, &[("C", Some(Accepted)), ("D", Some(Accepted))]),
            ),
            ("version 0 with entries", full(0, &[("X", Some(Accepted))])),
            ("negative version", full(-1, &[])),
            ("differential version 0", diff(0, &[])),
            (
                "Full entry without idTagInfo",
                full(2, &[("X", Some(Accepted)), ("Y", None)]),
            ),
            (
                "the same idTag twice",
                diff(2, &[("x", Some(Accepted)), ("X", None)]),
            ),
        ];
        for (why, update) in cases {
            let mut after = state.clone();
            assert_eq!(
                after.send_local_list(&update, small),
                (UpdateStatus::Failed, vec![]),
                "{why}"
            );
            assert_eq!(after, state, "{why}");
        }
    }

    #[test]
    fn list_version_reports_unsupported_empty_and_current() {
        let mut state = AuthState::default();
        let no_list = with(|k| k.local_auth_list_enabled = false);
        assert_eq!(state.list_version(no_list), -1);
        assert_eq!(state.list_version(keys()), 0);
        state.send_local_list(&full(7, &[("A", Some(Accepted))]), keys());
        assert_eq!(state.list_version(keys()), 7);
        assert_eq!(state.list_version(no_list), -1);
    }

    #[test]
    fn clear_cache_empties_an_enabled_cache_only() {
        let mut state = cached(&[("A", info(Accepted))]);
        let no_cache = with(|k| k.authorization_cache_enabled = false);
        assert_eq!(
            state.clear_cache(no_cache),
            (AcceptedRejected::Rejected, vec![])
        );
        assert_eq!(cache_tags(&state), ["A"]);
        assert_eq!(
            state.clear_cache(keys()),
            (AcceptedRejected::Accepted, vec![AuthChange::ClearCache])
        );
        assert!(state.cache.is_empty());
    }

    #[test]
    fn replaying_the_changes_rebuilds_the_state() {
        let mut live = AuthState::default();
        let mut log = Vec::new();
        let keys = keys();
        let now = Some(at(20));
        let now = now.as_ref();
        log.extend(
            live.send_local_list(&full(1, &[("L", Some(Accepted))]), keys)
                .1,
        );
        log.extend(live.record(&tag("A"), &info(Accepted), now, keys));
        log.extend(live.record(&tag("B"), &info_until(Accepted, 10), now, keys));
        log.extend(live.record(&tag("C"), &info(Invalid), now, keys));
        log.extend(live.touch(&tag("A")));
        log.extend(live.record(&tag("D"), &info(Accepted), now, keys));
        log.extend(live.record(&tag("L"), &info(Blocked), now, keys));
        log.extend(
            live.send_local_list(&diff(2, &[("L", None), ("M", Some(Blocked))]), keys)
                .1,
        );
        log.extend(live.record(&tag("E"), &info(Accepted), now, keys));
        let before_clear = live.clone();
        log.extend(live.clear_cache(keys).1);
        log.extend(live.record(&tag("F"), &info(Accepted), now, keys));

        assert_eq!(cache_tags(&before_clear), ["A", "D", "E"]);
        assert_eq!(cache_tags(&live), ["F"]);
        let mut rebuilt = AuthState::default();
        for change in log {
            rebuilt.apply(change);
        }
        assert_eq!(rebuilt, live);
    }
}
