//! `Controller::decide` on arbitrary statuses (format: `diten_fuzz` crate docs),
//! with fixed valid policies of the status's dimensions. Beyond "no panic, no
//! hang", checks what the controller documents for every decision it returns.
#![no_main]

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use diten_controller::controller::{
    SearchStart, DEFAULT_IMPROVEMENT_BUDGET, MAX_IMPROVEMENTS, MAX_REPAIR_NODES,
};
use diten_controller::policy::Policy;
use diten_controller::solver::MAX_SAMPLES;
use diten_controller::{Controller, Error, RepairOutcome, Slot};
use diten_fuzz::{decide_blob, Status, CAP};
use libfuzzer_sys::fuzz_target;

/// Blobs by (users, servers), built once each and leaked: `Policy` borrows them.
fn blob(users: usize, servers: usize) -> &'static [u8] {
    static BLOBS: OnceLock<Mutex<HashMap<(usize, usize), &'static [u8]>>> = OnceLock::new();
    let mut map = BLOBS.get_or_init(Default::default).lock().unwrap();
    map.entry((users, servers))
        .or_insert_with(|| Box::leak(decide_blob(users, servers).into_boxed_slice()))
}

fuzz_target!(|data: &[u8]| {
    let status = Status::decode(data);
    let slot = match Slot::<CAP, CAP>::new(&status.servers, &status.users) {
        Ok(slot) => slot,
        Err(e) => {
            let n = (status.servers.len(), status.users.len());
            match n {
                (0, _) => assert_eq!(e, Error::NoServers),
                (_, 0) => assert_eq!(e, Error::NoUsers),
                (s, u) if s > CAP || u > CAP => assert!(matches!(
                    e,
                    Error::TooManyServers { .. } | Error::TooManyUsers { .. }
                )),
                _ => assert!(matches!(
                    e,
                    Error::Server { .. } | Error::User { .. } | Error::NoAvailableServers
                )),
            }
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let (n_users, n_servers) = (status.users.len(), status.servers.len());
    let policy_users = if status.wrong_dims && n_users < CAP {
        n_users + 1
    } else {
        n_users
    };
    let policy = Policy::parse(blob(policy_users, n_servers)).expect("valid test blob");
    let mut workspace = vec![0.0f32; Controller::<CAP, CAP>::workspace_len(&policy)];
    let mut controller = match Controller::<CAP, CAP>::new(policy, status.params, &mut workspace) {
        Ok(c) => c,
        Err(e) => {
            assert!(matches!(e, Error::Param { .. }), "{e:?}");
            return;
        }
    };
    let decision = match controller.decide(&slot) {
        Ok(d) => d,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    Error::PolicyDims { .. }
                        | Error::UtilityExponent { .. }
                        | Error::ObservationValue { .. }
                ),
                "{e:?}"
            );
            assert!(policy_users != n_users || !matches!(e, Error::PolicyDims { .. }));
            return;
        }
    };
    assert_eq!(policy_users, n_users);
    assert_eq!(decision.association.len(), n_users);
    assert_eq!(decision.gamma.len(), n_users);
    assert!(decision.association.iter().all(|&s| s < n_servers));
    assert!(decision.argmax.iter().all(|&s| s < n_servers));
    // An unavailable server hosts nobody (SPEC §2.2a).
    let available = |s: usize| status.servers[s].available;
    assert!(decision.association.iter().all(|&s| available(s)));
    assert!(decision.argmax.iter().all(|&s| available(s)));
    assert!(
        decision.gamma.iter().all(|g| (0.0..=1.0).contains(g)),
        "gamma {:?}",
        decision.gamma
    );
    assert!(decision.search_nodes <= MAX_REPAIR_NODES);
    assert!(decision.solve.max_samples <= MAX_SAMPLES);
    match decision.repair {
        RepairOutcome::Clean | RepairOutcome::Repaired => {
            // C2 at the solver's γ and C3 hold whenever the repair says so.
            let v = decision.evaluation.violations;
            assert!(
                decision.feasible,
                "{:?} but violations {v:?}",
                decision.repair
            );
        }
        RepairOutcome::Infeasible | RepairOutcome::BoundReached => {
            assert_eq!(decision.association, decision.argmax);
            assert_eq!(decision.emptied, 0);
            assert_eq!((decision.improved, decision.improve_solves), (0, 0));
        }
    }
    // A clean association moves only when the consolidation empties servers or
    // the improvement changes it (or starts elsewhere).
    if decision.repair == RepairOutcome::Clean {
        assert!(
            decision.moved == 0
                || decision.emptied > 0
                || decision.improved > 0
                || decision.improve_start != SearchStart::Policy
        );
    }
    assert!(decision.improve_solves <= DEFAULT_IMPROVEMENT_BUDGET);
    assert!(decision.improved <= MAX_IMPROVEMENTS);
    assert!(decision.emptied < n_servers.max(1));
});
