//! Runs the core of `examples/sip_gw_load.rs` (included as a module, so nothing else is
//! built) with a tiny load: 4 clients watching 2 Lync users each, 400 NOTIFYs, 400
//! MESSAGEs each way and 400 both ways at once. Checks that every phase counts what it
//! sent with no error; figures are not checked (debug build, tiny counts). Loopback
//! only, ephemeral ports on 127.0.0.10 and 127.0.0.1 (no address lease needed), a few
//! seconds.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)] // `main` and the argument parser are the example's
#[path = "../examples/sip_gw_load.rs"]
mod sip_gw_load;

#[test]
fn sip_gw_load_runs_with_a_tiny_load() {
    let o = sip_gw_load::Opts {
        clients: 4,
        remote: 2,
        notifies: 400,
        messages: 400,
        window: 50,
        pidf: false,
        timeout: 30,
    };
    let r = sip_gw_load::run(&o).unwrap_or_else(|e| panic!("sip_gw_load: {e}"));
    let text = r.render(&o);
    eprintln!("{text}");
    assert_eq!(r.errors, 0, "{text}");
    // B2 went in the partner's sessions: the node opened none of its own.
    assert_eq!(r.node_invites, 0, "{text}");
    let counts: Vec<u64> = r.phases.iter().map(|p| p.count).collect();
    assert_eq!(counts, [400, 400, 400, 400], "{text}");
    for p in &r.phases {
        assert!(p.rate() > 0.0, "{text}");
        // Every phase measured latencies (the NOTIFY phase through the per-dialog
        // send times).
        assert!(p.p99.is_finite(), "{}: no latency sample\n{text}", p.name);
    }

    // The PIDF bodies go through the same path.
    let o = sip_gw_load::Opts { pidf: true, ..o };
    let r = sip_gw_load::run(&o).unwrap_or_else(|e| panic!("sip_gw_load --pidf: {e}"));
    assert_eq!(r.errors, 0, "{}", r.render(&o));
    assert_eq!(r.phases[0].count, 400, "{}", r.render(&o));
}
