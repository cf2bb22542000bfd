//! Asymmetric logical unit access (SPC-4 5.15), implicit and explicit:
//! several daemons export one logical unit (an RBD image) through their
//! own target port, each port in a target port group of its own. Which
//! port is active/optimized follows an ownership signal the daemon keeps
//! current (the image's exclusive lock): the owner's group is
//! ACTIVE/OPTIMIZED, the others in the configured [`NonOwner`] state:
//! - ACTIVE/NON-OPTIMIZED (the default): they still serve every command;
//!   the backend moves the ownership on a write (librbd requests the lock
//!   from its owner, or breaks it when the owner is dead), and the states
//!   follow;
//! - STANDBY: they serve only the commands a standby port must
//!   ([`super::table::Facts::standby_ok`]), every other gets NOT READY,
//!   TARGET PORT IN STANDBY STATE, so no write through them moves the
//!   ownership: only a SET TARGET PORT GROUPS does (the initiator's ALUA
//!   handler sends one when it fails over to a standby group).
//!
//! SET TARGET PORT GROUPS naming this port's group active/optimized moves
//! the ownership here at once ([`set_request`]).
//!
//! TCMU does not say which port a command came through: a daemon serves
//! one port of the logical unit ([`AluaConfig::relative_port`]) and names
//! the others ([`AluaConfig::peers`]).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::error::ScsiError;

/// An asymmetric access state (SPC-4 table 170), as REPORT TARGET PORT
/// GROUPS encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AccessState {
    /// Active/optimized.
    ActiveOptimized = 0x0,
    /// Active/non-optimized.
    ActiveNonOptimized = 0x1,
    /// Standby: only the commands [`super::table::Facts::standby_ok`]
    /// names are served.
    Standby = 0x2,
    /// Unavailable: this daemon cannot reach the unit's backend (its
    /// cluster connection is lost or being reopened); only the commands
    /// [`super::table::Facts::unavailable_ok`] names are served.
    Unavailable = 0x3,
    /// Transitioning between states.
    Transitioning = 0xF,
}

/// Who owns the logical unit, as the daemon last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Not known yet (or the cluster cannot be asked).
    Unknown,
    /// This daemon (its port's group is active/optimized).
    Local,
    /// Another client: a peer daemon, whose TARGET PORT GROUP is known
    /// when the owner published it (and the publication names the client
    /// that holds the ownership now).
    Remote(Option<u16>),
    /// Nobody: the first write through any port takes it.
    Unowned,
    /// This daemon cannot reach the unit's backend (a lost or reopening
    /// cluster connection): its port is unavailable, and who owns the unit
    /// is not known here ([`OwnershipCell::set_reachable`]).
    Unreachable,
}

impl Ownership {
    /// The ownership as one word (for an atomic): the kind in the low
    /// byte, a known owner group in the high half with bit 8 set.
    pub(crate) fn encode(self) -> u32 {
        match self {
            Ownership::Unknown => 0,
            Ownership::Local => 1,
            Ownership::Remote(None) => 2,
            Ownership::Remote(Some(g)) => 2 | 0x100 | (u32::from(g) << 16),
            Ownership::Unowned => 3,
            Ownership::Unreachable => 4,
        }
    }

    /// The ownership stored as `v` by [`Ownership::encode`] (anything
    /// else: [`Ownership::Unknown`]).
    pub(crate) fn decode(v: u32) -> Ownership {
        match v & 0xFF {
            1 => Ownership::Local,
            2 if v & 0x100 != 0 => Ownership::Remote(u16::try_from(v >> 16).ok()),
            2 => Ownership::Remote(None),
            3 => Ownership::Unowned,
            4 => Ownership::Unreachable,
            _ => Ownership::Unknown,
        }
    }
}

/// The ownership signal: set by the daemon (e.g. a thread watching the RBD
/// exclusive lock), read by the LUN on every command. It also carries this
/// daemon's own TARGET PORT GROUP once the LUN adopted it, for the watcher
/// to publish while it holds the ownership (so that the peers can tell
/// which of them owns the unit), and whether the daemon reaches the unit's
/// backend at all.
#[derive(Debug, Default)]
pub struct OwnershipCell {
    ownership: AtomicU32,
    /// The backend cannot be reached: [`OwnershipCell::get`] says
    /// [`Ownership::Unreachable`] whatever the lock's last owner.
    unreachable: AtomicBool,
    /// This port's group plus one; 0 while not known.
    group: AtomicU32,
}

impl OwnershipCell {
    /// A cell holding [`Ownership::Unknown`].
    pub fn new() -> OwnershipCell {
        OwnershipCell::default()
    }

    /// Records `o` (the lock's owner as last seen); whether it changed.
    pub fn set(&self, o: Ownership) -> bool {
        self.ownership.swap(o.encode(), Ordering::AcqRel) != o.encode()
    }

    /// Records whether the daemon reaches the unit's backend (the backend
    /// says no on a timeout or a lost connection, yes once it reconnected
    /// or the cluster answered again); whether it changed.
    pub fn set_reachable(&self, reachable: bool) -> bool {
        if self.reachable() == reachable {
            return false; // the common case writes no shared line
        }
        self.unreachable.swap(!reachable, Ordering::AcqRel) == reachable
    }

    /// Whether the backend was last recorded reachable.
    pub fn reachable(&self) -> bool {
        !self.unreachable.load(Ordering::Acquire)
    }

    /// The last recorded ownership ([`Ownership::Unreachable`] while the
    /// backend cannot be reached).
    pub fn get(&self) -> Ownership {
        if !self.reachable() {
            return Ownership::Unreachable;
        }
        Ownership::decode(self.ownership.load(Ordering::Acquire))
    }

    /// Records this daemon's TARGET PORT GROUP (the LUN does, when it
    /// adopts the cell with an ALUA configuration).
    pub fn set_group(&self, group: u16) {
        self.group.store(u32::from(group) + 1, Ordering::Release);
    }

    /// This daemon's TARGET PORT GROUP, once recorded.
    pub fn group(&self) -> Option<u16> {
        let g = self.group.load(Ordering::Acquire);
        g.checked_sub(1).and_then(|g| u16::try_from(g).ok())
    }
}

/// Another daemon's port of the same logical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AluaPeer {
    /// Its TARGET PORT GROUP.
    pub group: u16,
    /// Its RELATIVE TARGET PORT IDENTIFIER.
    pub relative_port: u16,
}

/// The state of the groups that do not own the logical unit (in a daemon's
/// configuration `"active-non-optimized"` or `"standby"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonOwner {
    /// ACTIVE/NON-OPTIMIZED: every command served; a write moves the
    /// ownership (implicit ALUA).
    #[default]
    ActiveNonOptimized,
    /// STANDBY: the ownership moves only by SET TARGET PORT GROUPS
    /// (explicit ALUA, as an initiator's failover sends it).
    Standby,
}

impl NonOwner {
    /// The access state it reports.
    pub fn state(self) -> AccessState {
        match self {
            NonOwner::ActiveNonOptimized => AccessState::ActiveNonOptimized,
            NonOwner::Standby => AccessState::Standby,
        }
    }
}

/// This daemon's place among the ports of the logical unit. Every daemon
/// exporting the unit must name the same groups, each its own as `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AluaConfig {
    /// TARGET PORT GROUP of this daemon's port (VPD 83h designator type
    /// 5); must differ from every peer's.
    pub group: u16,
    /// RELATIVE TARGET PORT IDENTIFIER of this daemon's port (VPD 83h
    /// designator type 4; 0 is reserved).
    pub relative_port: u16,
    /// The other daemons' ports.
    pub peers: Vec<AluaPeer>,
    /// IMPLICIT TRANSITION TIME in seconds (extended RTPG header): how long
    /// moving the ownership may take (a dead owner's lock is broken after
    /// the cluster's watch timeout).
    pub transition_secs: u8,
    /// The state of the groups that do not own the unit (every daemon
    /// exporting it must name the same).
    pub non_owner: NonOwner,
    /// The group reported with PREF set (the preferred way to the unit;
    /// every daemon exporting it must name the same): multipath's `alua`
    /// prioritizer ranks a preferred path above an active/optimized one,
    /// so I/O goes there, and its writes bring the ownership home.
    pub preferred: Option<u16>,
}

impl AluaConfig {
    /// Every port of the unit as (TARGET PORT GROUP, RELATIVE TARGET PORT
    /// IDENTIFIER): this daemon's first, then the peers'.
    fn ports(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        std::iter::once((self.group, self.relative_port))
            .chain(self.peers.iter().map(|p| (p.group, p.relative_port)))
    }

    /// Whether `group` is one of the unit's configured groups.
    fn has_group(&self, group: u16) -> bool {
        self.ports().any(|(g, _)| g == group)
    }

    /// Checks the configuration: relative port not 0, group ids and
    /// relative ports all distinct, the preferred group one of them.
    pub fn validate(&self) -> Result<(), String> {
        if self.relative_port == 0 || self.peers.iter().any(|p| p.relative_port == 0) {
            return Err("relative target port 0 is reserved".into());
        }
        let mut groups = vec![self.group];
        let mut ports = vec![self.relative_port];
        for p in &self.peers {
            if groups.contains(&p.group) {
                return Err(format!("target port group {} named twice", p.group));
            }
            if ports.contains(&p.relative_port) {
                return Err(format!(
                    "relative target port {} named twice",
                    p.relative_port
                ));
            }
            groups.push(p.group);
            ports.push(p.relative_port);
        }
        match self.preferred {
            Some(g) if !self.has_group(g) => Err(format!(
                "preferred target port group {g} is neither this port's group nor a peer's"
            )),
            _ => Ok(()),
        }
    }

    /// The group that owns the unit under `o`, when known: this port's
    /// (`Local`), the peer the owner published (`Remote(Some)`), or with
    /// a single peer that peer (another client holds it: the peer, or a
    /// tool outside the daemons; or this daemon cannot reach the unit, so
    /// the peer is the initiator's one way to it).
    fn owner_group(&self, o: Ownership) -> Option<u16> {
        match o {
            Ownership::Local => Some(self.group),
            Ownership::Remote(Some(g)) if self.peers.iter().any(|p| p.group == g) => Some(g),
            Ownership::Remote(_) | Ownership::Unreachable => match self.peers.as_slice() {
                [only] => Some(only.group),
                _ => None,
            },
            Ownership::Unowned | Ownership::Unknown => None,
        }
    }

    /// The access state of target port group `group` under `o`: this
    /// port's unavailable while its daemon cannot reach the unit; the
    /// owner's active/optimized; every other in the non-owner state.
    pub fn state_of(&self, group: u16, o: Ownership) -> AccessState {
        if o == Ownership::Unreachable && group == self.group {
            AccessState::Unavailable
        } else if self.owner_group(o) == Some(group) {
            AccessState::ActiveOptimized
        } else {
            self.non_owner.state()
        }
    }

    /// The access state of this port's group under `o`.
    pub fn own_state(&self, o: Ownership) -> AccessState {
        self.state_of(self.group, o)
    }

    /// Whether some group's state differs between `a` and `b`.
    pub fn states_differ(&self, a: Ownership, b: Ownership) -> bool {
        self.ports()
            .any(|(g, _)| self.state_of(g, a) != self.state_of(g, b))
    }

    /// Why this port refuses a command under `o`, unless the command is
    /// one the port's state still serves (`standby_ok`, `unavailable_ok`:
    /// the command table's columns): NOT READY, TARGET PORT IN STANDBY /
    /// UNAVAILABLE STATE.
    pub(crate) fn refusal(
        &self,
        o: Ownership,
        standby_ok: bool,
        unavailable_ok: bool,
    ) -> Option<ScsiError> {
        match self.own_state(o) {
            AccessState::Standby if !standby_ok => Some(ScsiError::TargetPortStandby),
            AccessState::Unavailable if !unavailable_ok => Some(ScsiError::TargetPortUnavailable),
            _ => None,
        }
    }

    /// SUPPORTED states of every group: T_SUP, U_SUP, AO_SUP and the
    /// non-owners' (AN_SUP or S_SUP).
    fn supported_states(&self) -> u8 {
        0x80 | 0x08
            | 0x01
            | match self.non_owner {
                NonOwner::ActiveNonOptimized => 0x02,
                NonOwner::Standby => 0x04,
            }
    }
}

/// Why the states last changed: the STATUS CODE of REPORT TARGET PORT
/// GROUPS (SPC-4 table 176).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StatusCode {
    /// No change since the unit started serving.
    None = 0x00,
    /// Altered by a SET TARGET PORT GROUPS command.
    AlteredBySetTargetPortGroups = 0x01,
    /// Altered by an implicit transition.
    AlteredImplicitly = 0x02,
}

impl StatusCode {
    /// The code stored as `v` (anything else: [`StatusCode::None`]).
    pub(crate) fn from_u8(v: u8) -> StatusCode {
        match v {
            0x01 => StatusCode::AlteredBySetTargetPortGroups,
            0x02 => StatusCode::AlteredImplicitly,
            _ => StatusCode::None,
        }
    }
}

/// What a SET TARGET PORT GROUPS parameter list asks of this daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetRequest {
    /// The states it names are the current ones (or it names none).
    Unchanged,
    /// This port's group active/optimized: take the ownership here.
    TakeOwnership,
    /// States only another daemon could bring about (a peer's group
    /// optimized, or this one non-optimized while it owns the unit): the
    /// ownership moves to a peer when a write reaches it, not on request.
    NotHere,
}

/// Parses a SET TARGET PORT GROUPS parameter list (SPC-4 6.40: 4 reserved
/// bytes, then 4-byte descriptors of ASYMMETRIC ACCESS STATE and TARGET
/// PORT GROUP) against the configured groups and the ownership `o`.
///
/// INVALID FIELD IN PARAMETER LIST for a group not configured, one named
/// twice, a state other than active/optimized or the configured
/// non-owners' state (the only two supported) or two groups optimized at
/// once; PARAMETER LIST LENGTH ERROR for a list that is not a header plus
/// whole descriptors.
pub(crate) fn set_request(
    cfg: &AluaConfig,
    o: Ownership,
    list: &[u8],
) -> Result<SetRequest, ScsiError> {
    if list.is_empty() {
        return Ok(SetRequest::Unchanged);
    }
    if list.len() < 4 || (list.len() - 4) % 4 != 0 {
        return Err(ScsiError::ParameterListLength);
    }
    let mut seen: Vec<u16> = Vec::new();
    let (mut optimized, mut unchanged, mut own_optimized) = (0, true, false);
    for (i, d) in list[4..].chunks_exact(4).enumerate() {
        let at = 4 + 4 * i;
        let group = u16::from_be_bytes([d[2], d[3]]);
        let state = match d[0] & 0x0F {
            0x0 => AccessState::ActiveOptimized,
            s if s == cfg.non_owner.state() as u8 => cfg.non_owner.state(),
            _ => return Err(ScsiError::param(at)),
        };
        if !cfg.has_group(group) {
            return Err(ScsiError::param(at + 2));
        }
        let now = cfg.state_of(group, o);
        if seen.contains(&group) {
            return Err(ScsiError::param(at + 2));
        }
        seen.push(group);
        if state == AccessState::ActiveOptimized {
            optimized += 1;
            if optimized > 1 {
                return Err(ScsiError::param(at));
            }
            own_optimized = group == cfg.group;
        }
        unchanged &= state == now;
    }
    Ok(if unchanged {
        SetRequest::Unchanged
    } else if own_optimized {
        SetRequest::TakeOwnership
    } else {
        SetRequest::NotHere
    })
}

/// The REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36), own group
/// first, with the extended header (format 001b) when `extended`.
pub(crate) fn report(
    cfg: &AluaConfig,
    o: Ownership,
    status: StatusCode,
    extended: bool,
) -> Vec<u8> {
    let (status, supported) = (status as u8, cfg.supported_states());
    let mut descs = Vec::with_capacity(12 * (1 + cfg.peers.len()));
    for (group, port) in cfg.ports() {
        let state = cfg.state_of(group, o);
        // Not on an unavailable group: multipath would rank it first.
        let preferred = cfg.preferred == Some(group) && state != AccessState::Unavailable;
        let pref = if preferred { 0x80 } else { 0 };
        descs.push(pref | state as u8); // PREF, ASYMMETRIC ACCESS STATE
        descs.push(supported);
        descs.extend_from_slice(&group.to_be_bytes()); // TARGET PORT GROUP
        descs.push(0); // reserved
        descs.push(status); // STATUS CODE
        descs.push(0); // vendor specific
        descs.push(1); // TARGET PORT COUNT
        descs.extend_from_slice(&[0, 0]); // obsolete
        descs.extend_from_slice(&port.to_be_bytes()); // RELATIVE TARGET PORT IDENTIFIER
    }
    let len = u32::try_from(descs.len()).unwrap_or(u32::MAX);
    let mut d = len.to_be_bytes().to_vec(); // RETURN DATA LENGTH
    if extended {
        d.push(0x10); // FORMAT TYPE 001b
        d.push(cfg.transition_secs); // IMPLICIT TRANSITION TIME
        d.extend_from_slice(&[0, 0]);
    }
    d.extend(descs);
    d
}

/// The VPD 83h designators of this daemon's port: RELATIVE TARGET PORT
/// (type 4) and TARGET PORT GROUP (type 5), both associated with the
/// target port.
pub(crate) fn port_designators(cfg: &AluaConfig) -> Vec<u8> {
    let [ph, pl] = cfg.relative_port.to_be_bytes();
    let [gh, gl] = cfg.group.to_be_bytes();
    vec![
        0x01, 0x14, 0x00, 0x04, 0, 0, ph, pl, // binary, target port, relative target port
        0x01, 0x15, 0x00, 0x04, 0, 0, gh, gl, // binary, target port, target port group
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> AluaConfig {
        AluaConfig {
            group: 1,
            relative_port: 1,
            peers: vec![AluaPeer {
                group: 2,
                relative_port: 2,
            }],
            transition_secs: 30,
            non_owner: NonOwner::ActiveNonOptimized,
            preferred: None,
        }
    }

    fn standby_two() -> AluaConfig {
        AluaConfig {
            non_owner: NonOwner::Standby,
            ..two()
        }
    }

    #[test]
    fn preferred_group_is_reported_with_pref_and_must_be_configured() {
        let c = AluaConfig {
            preferred: Some(2),
            ..three()
        };
        assert!(c.validate().is_ok());
        let d = report(&c, Ownership::Remote(Some(3)), StatusCode::None, false);
        let first: Vec<u8> = d[4..].chunks(12).map(|g| g[0]).collect();
        // group 1 non-optimized, group 2 preferred and non-optimized, group
        // 3 the owner
        assert_eq!(first, [0x01, 0x81, 0x00]);
        let bad = AluaConfig {
            preferred: Some(4),
            ..three()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("preferred target port group 4"));
        // PREF does not change a state
        assert_eq!(
            c.state_of(2, Ownership::Remote(Some(3))),
            AccessState::ActiveNonOptimized
        );
        // ... and is not reported on an unavailable group
        let own_pref = AluaConfig {
            preferred: Some(1),
            ..three()
        };
        let d = report(&own_pref, Ownership::Unreachable, StatusCode::None, false);
        assert_eq!(d[4], 0x03, "group 1 unavailable, no PREF");
        let d = report(&own_pref, Ownership::Local, StatusCode::None, false);
        assert_eq!(d[4], 0x80);
    }

    #[test]
    fn validate_rejects_reserved_port_and_duplicates() {
        assert!(two().validate().is_ok());
        let mut c = two();
        c.relative_port = 0;
        assert!(c.validate().is_err());
        let mut c = two();
        c.peers[0].group = 1;
        assert!(c.validate().unwrap_err().contains("group 1"));
        let mut c = two();
        c.peers[0].relative_port = 1;
        assert!(c.validate().unwrap_err().contains("port 1"));
    }

    fn three() -> AluaConfig {
        AluaConfig {
            peers: vec![
                AluaPeer {
                    group: 2,
                    relative_port: 2,
                },
                AluaPeer {
                    group: 3,
                    relative_port: 3,
                },
            ],
            ..two()
        }
    }

    #[test]
    fn ownership_encodes_into_one_word_and_back() {
        for o in [
            Ownership::Unknown,
            Ownership::Local,
            Ownership::Remote(None),
            Ownership::Remote(Some(0)),
            Ownership::Remote(Some(7)),
            Ownership::Remote(Some(u16::MAX)),
            Ownership::Unowned,
        ] {
            assert_eq!(Ownership::decode(o.encode()), o);
        }
        assert_eq!(Ownership::decode(0xFF), Ownership::Unknown);
        let c = OwnershipCell::new();
        assert_eq!(c.group(), None);
        c.set_group(0);
        assert_eq!(c.group(), Some(0));
        c.set_group(u16::MAX);
        assert_eq!(c.group(), Some(u16::MAX));
        assert!(c.set(Ownership::Remote(Some(3))));
        assert!(
            c.set(Ownership::Remote(Some(2))),
            "another owner is a change"
        );
        assert_eq!(c.get(), Ownership::Remote(Some(2)));
    }

    #[test]
    fn with_several_peers_only_a_published_owner_is_reported_optimized() {
        use AccessState::{ActiveNonOptimized as N, ActiveOptimized as Ao};
        let c = three();
        let states = |o| [1, 2, 3].map(|g| c.state_of(g, o));
        assert_eq!(states(Ownership::Local), [Ao, N, N]);
        assert_eq!(states(Ownership::Remote(Some(3))), [N, N, Ao]);
        // Owner not known, or a group that is not a peer: none optimized.
        assert_eq!(states(Ownership::Remote(None)), [N, N, N]);
        assert_eq!(states(Ownership::Remote(Some(9))), [N, N, N]);
        assert_eq!(states(Ownership::Remote(Some(1))), [N, N, N]);
        // With one peer another client's ownership is that peer's.
        assert_eq!(two().state_of(2, Ownership::Remote(Some(9))), Ao);
        assert!(c.states_differ(Ownership::Remote(Some(2)), Ownership::Remote(Some(3))));
        assert!(!c.states_differ(Ownership::Remote(None), Ownership::Unowned));
        let d = report(&c, Ownership::Remote(Some(3)), StatusCode::None, false);
        let got: Vec<(u8, u8)> = d[4..].chunks(12).map(|g| (g[3], g[0])).collect();
        assert_eq!(got, [(1, 1), (2, 1), (3, 0)]);
        // SET TARGET PORT GROUPS sees the same states.
        assert_eq!(
            set_request(&c, Ownership::Remote(Some(3)), &stpg(&[(1, 1), (0, 3)])).unwrap(),
            SetRequest::Unchanged
        );
        assert_eq!(
            set_request(&c, Ownership::Remote(Some(3)), &stpg(&[(0, 2)])).unwrap(),
            SetRequest::NotHere
        );
    }

    #[test]
    fn an_unreachable_backend_makes_this_port_unavailable() {
        use AccessState::{ActiveNonOptimized as N, ActiveOptimized as Ao, Unavailable as U};
        let cell = OwnershipCell::new();
        assert!(cell.set(Ownership::Local));
        assert!(!cell.set_reachable(true), "reachable already");
        assert!(cell.set_reachable(false));
        assert!(!cell.set_reachable(false));
        assert_eq!(cell.get(), Ownership::Unreachable);
        let o = cell.get();
        // Own group unavailable; with one peer that peer is the way in.
        assert_eq!((two().state_of(1, o), two().state_of(2, o)), (U, Ao));
        assert_eq!([1, 2, 3].map(|g| three().state_of(g, o)), [U, N, N]);
        let d = report(&two(), o, StatusCode::None, false);
        assert_eq!(&d[4..6], &[0x03, 0x8B]);
        // Only the few commands an unavailable port serves.
        assert!(matches!(
            two().refusal(o, true, false),
            Some(ScsiError::TargetPortUnavailable)
        ));
        assert!(two().refusal(o, false, true).is_none());
        assert!(matches!(
            standby_two().refusal(Ownership::Remote(None), false, true),
            Some(ScsiError::TargetPortStandby)
        ));
        assert!(two()
            .refusal(Ownership::Remote(None), false, false)
            .is_none());
        // Reachable again: the lock's owner as last recorded.
        assert!(cell.set_reachable(true));
        assert_eq!(cell.get(), Ownership::Local);
        assert_eq!(
            Ownership::decode(Ownership::Unreachable.encode()),
            Ownership::Unreachable
        );
        assert!(two().states_differ(Ownership::Local, Ownership::Unreachable));
    }

    #[test]
    fn ownership_cell_reports_changes_once() {
        let c = OwnershipCell::new();
        assert_eq!(c.get(), Ownership::Unknown);
        assert!(c.set(Ownership::Local));
        assert!(!c.set(Ownership::Local));
        assert_eq!(c.get(), Ownership::Local);
    }

    #[test]
    fn report_lists_own_group_first_with_its_port() {
        let d = report(
            &two(),
            Ownership::Remote(None),
            StatusCode::AlteredImplicitly,
            false,
        );
        assert_eq!(&d[..4], &[0, 0, 0, 24]);
        assert_eq!(&d[4..16], &[0x01, 0x8B, 0, 1, 0, 0x02, 0, 1, 0, 0, 0, 1]);
        assert_eq!(&d[16..28], &[0x00, 0x8B, 0, 2, 0, 0x02, 0, 1, 0, 0, 0, 2]);
        let x = report(&two(), Ownership::Local, StatusCode::None, true);
        assert_eq!(&x[..8], &[0, 0, 0, 24, 0x10, 30, 0, 0]);
        assert_eq!((x[8], x[20]), (0x00, 0x01));
    }

    /// A SET TARGET PORT GROUPS list: header + descriptors (state, group).
    fn stpg(descs: &[(u8, u16)]) -> Vec<u8> {
        let mut l = vec![0; 4];
        for &(state, group) in descs {
            let [h, lo] = group.to_be_bytes();
            l.extend_from_slice(&[state, 0, h, lo]);
        }
        l
    }

    #[test]
    fn set_request_takes_ownership_only_for_this_ports_group() {
        use SetRequest::*;
        let c = two();
        // Own group optimized: taken here, unless already the owner.
        assert_eq!(
            set_request(&c, Ownership::Remote(None), &stpg(&[(0, 1)])).unwrap(),
            TakeOwnership
        );
        assert_eq!(
            set_request(&c, Ownership::Unowned, &stpg(&[(0, 1), (1, 2)])).unwrap(),
            TakeOwnership
        );
        assert_eq!(
            set_request(&c, Ownership::Local, &stpg(&[(0, 1)])).unwrap(),
            Unchanged
        );
        // The states as they are, or nothing named: nothing to do.
        assert_eq!(
            set_request(&c, Ownership::Remote(None), &stpg(&[(0, 2), (1, 1)])).unwrap(),
            Unchanged
        );
        assert_eq!(
            set_request(&c, Ownership::Remote(None), &stpg(&[])).unwrap(),
            Unchanged
        );
        assert_eq!(
            set_request(&c, Ownership::Remote(None), &[]).unwrap(),
            Unchanged
        );
        // A peer optimized while this daemon owns the unit: not on request.
        assert_eq!(
            set_request(&c, Ownership::Local, &stpg(&[(0, 2)])).unwrap(),
            NotHere
        );
        assert_eq!(
            set_request(&c, Ownership::Local, &stpg(&[(1, 1)])).unwrap(),
            NotHere
        );
    }

    #[test]
    fn set_request_refuses_bad_lists_with_a_pointer() {
        let c = two();
        let err = |l: &[u8]| {
            set_request(&c, Ownership::Remote(None), l)
                .unwrap_err()
                .to_sense()
        };
        let ptr = |l: &[u8]| err(l).field_pointer.map(|f| f.byte);
        // Unknown group, duplicate group: the group field.
        assert_eq!(ptr(&stpg(&[(0, 9)])), Some(6));
        assert_eq!(ptr(&stpg(&[(1, 2), (1, 2)])), Some(10));
        // Unsupported state (standby), two optimized: the state field.
        assert_eq!(ptr(&stpg(&[(2, 1)])), Some(4));
        assert_eq!(ptr(&stpg(&[(0, 1), (0, 2)])), Some(8));
        // Not a header plus whole descriptors.
        for l in [&[0u8, 0][..], &[0, 0, 0, 0, 0, 0][..]] {
            assert!(matches!(
                set_request(&c, Ownership::Remote(None), l),
                Err(ScsiError::ParameterListLength)
            ));
        }
    }

    #[test]
    fn standby_mode_reports_non_owners_standby_with_s_sup() {
        let c = standby_two();
        use AccessState::{ActiveOptimized as Ao, Standby as S};
        let states = |o| (c.state_of(1, o), c.state_of(2, o));
        assert_eq!(states(Ownership::Local), (Ao, S));
        assert_eq!(states(Ownership::Remote(None)), (S, Ao));
        assert_eq!(states(Ownership::Unowned), (S, S));
        assert_eq!(states(Ownership::Unknown), (S, S));
        let standby = |c: &AluaConfig, o| c.own_state(o) == S;
        assert!(standby(&c, Ownership::Remote(None)) && !standby(&c, Ownership::Local));
        assert!(!standby(&two(), Ownership::Remote(None)) && !standby(&two(), Ownership::Unknown));
        let d = report(&c, Ownership::Remote(None), StatusCode::None, false);
        // own group standby, S_SUP instead of AN_SUP; the peer optimized
        assert_eq!(&d[4..6], &[0x02, 0x8D]);
        assert_eq!(&d[16..18], &[0x00, 0x8D]);
        assert_eq!(
            report(&two(), Ownership::Remote(None), StatusCode::None, false)[5],
            0x8B
        );
    }

    #[test]
    fn standby_mode_set_request_accepts_standby_and_refuses_non_optimized() {
        use SetRequest::*;
        let c = standby_two();
        // What Linux's scsi_dh_alua sends on failover: its group optimized.
        assert_eq!(
            set_request(&c, Ownership::Unowned, &stpg(&[(0, 1)])).unwrap(),
            TakeOwnership
        );
        assert_eq!(
            set_request(&c, Ownership::Remote(None), &stpg(&[(0, 1), (2, 2)])).unwrap(),
            TakeOwnership
        );
        assert_eq!(
            set_request(&c, Ownership::Local, &stpg(&[(0, 1), (2, 2)])).unwrap(),
            Unchanged
        );
        assert_eq!(
            set_request(&c, Ownership::Local, &stpg(&[(2, 1)])).unwrap(),
            NotHere
        );
        // Non-optimized is not a state of this configuration.
        let ptr = set_request(&c, Ownership::Remote(None), &stpg(&[(1, 2)]))
            .unwrap_err()
            .to_sense()
            .field_pointer
            .map(|f| f.byte);
        assert_eq!(ptr, Some(4));
    }
}
