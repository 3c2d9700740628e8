//! One test per row of each of the seven tables of `spec/presence-mapping.md`,
//! transcribed here independently of the data in `src/tables.rs` and checked
//! through the checker (`--from F --to F STATE [STATUS]`), so a typo in either
//! place fails.

use fedgate_presence::checker::run;

/// `row!(from "State" [status] => to: "expected", ...)`; each expected value
/// is the checker output: the state, then the status text in double quotes.
macro_rules! row {
    ($name:ident: $from:literal $state:literal $(, $status:literal)? => $($to:literal : $expect:literal),+ $(,)?) => {
        #[test]
        fn $name() {
            let status: Option<&str> = None $( .or(Some($status)) )?;
            $(
                let mut args = vec!["--from", $from, "--to", $to, $state];
                args.extend(status);
                assert_eq!(run(args.iter()).unwrap(), $expect, "{} {} -> {}", $from, $state, $to);
            )+
        }
    };
}

// Table 1 - from Lync. (xmpp-local | jabber)
row!(t1_r1_available: "lync" "Available" => "xmpp-local": "Available", "jabber": "Available");
row!(t1_r2_busy: "lync" "Busy" => "xmpp-local": "Away \"Busy\"", "jabber": "Busy");
row!(t1_r3_do_not_disturb: "lync" "Do Not Disturb" => "xmpp-local": "Away \"Busy\"", "jabber": "Busy");
row!(t1_r4_be_right_back: "lync" "Be Right Back" => "xmpp-local": "Away", "jabber": "Away");
row!(t1_r5_away: "lync" "Away" => "xmpp-local": "Away", "jabber": "Away");
row!(t1_r6_offline: "lync" "Offline" => "xmpp-local": "Offline", "jabber": "Offline");

// Table 2 - from Jabber 8.x to Lync.
row!(t2_r1_available: "jabber" "Available" => "lync": "Available");
row!(t2_r2_busy: "jabber" "Busy" => "lync": "Busy");
row!(t2_r3_do_not_disturb: "jabber" "Do Not Disturb" => "lync": "Busy");
row!(t2_r4_offline: "jabber" "Offline" => "lync": "Offline");

// Table 3 - from a local third-party XMPP client to Lync.
row!(t3_r1_available: "xmpp-local" "Available" => "lync": "Available");
row!(t3_r2_away: "xmpp-local" "Away" => "lync": "Away");
row!(t3_r3_extended_away: "xmpp-local" "Extended Away" => "lync": "Away");
row!(t3_r4_do_not_disturb: "xmpp-local" "Do Not Disturb" => "lync": "Busy");
row!(t3_r5_offline: "xmpp-local" "Offline" => "lync": "Offline");

// Table 4 - from Sametime 8.2. (xmpp-local | jabber; "with status message"
// is checked with a status text "S".)
row!(t4_r1_available: "sametime" "Available", "S" => "xmpp-local": "Available", "jabber": "Available \"S\"");
row!(t4_r2_do_not_disturb: "sametime" "Do Not Disturb", "S" => "xmpp-local": "Do Not Disturb", "jabber": "Do Not Disturb \"S\"");
row!(t4_r3_in_a_meeting: "sametime" "Available", "In a meeting" => "xmpp-local": "Available \"In a meeting\"", "jabber": "Available \"In a meeting\"");
row!(t4_r4_away: "sametime" "Away", "S" => "xmpp-local": "Away", "jabber": "Away \"S\"");
row!(t4_r5_offline: "sametime" "Offline" => "xmpp-local": "Offline", "jabber": "Offline");

// Table 5 - from Webex Connect. (xmpp-local | jabber)
row!(t5_r1_available: "webex" "Available" => "xmpp-local": "Available", "jabber": "Available");
row!(t5_r2_do_not_disturb: "webex" "Do Not Disturb" => "xmpp-local": "Do Not Disturb", "jabber": "Do Not Disturb");
row!(t5_r3_away_in_a_meeting: "webex" "Away", "In a meeting" => "xmpp-local": "Available \"In a meeting\"", "jabber": "Away \"In a meeting\"");
row!(t5_r4_away: "webex" "Away" => "xmpp-local": "Away", "jabber": "Away");
row!(t5_r5_offline: "webex" "Offline" => "xmpp-local": "Offline", "jabber": "Offline");

// Table 6 - from Jabber 8.x to federated clients. (jabber-fed | xmpp-fed | webex | sametime)
row!(t6_r1_available: "jabber" "Available" => "jabber-fed": "Available", "xmpp-fed": "Available", "webex": "Available", "sametime": "Available");
row!(t6_r2_do_not_disturb: "jabber" "Do Not Disturb" => "jabber-fed": "Do Not Disturb", "xmpp-fed": "Do Not Disturb", "webex": "Do Not Disturb", "sametime": "Do Not Disturb");
row!(t6_r3_busy: "jabber" "Busy" => "jabber-fed": "Busy", "xmpp-fed": "Away", "webex": "Idle", "sametime": "Away");
row!(t6_r4_idle: "jabber" "Idle" => "jabber-fed": "Idle", "xmpp-fed": "Idle", "webex": "Idle", "sametime": "Idle");
row!(t6_r5_offline: "jabber" "Offline" => "jabber-fed": "Offline", "xmpp-fed": "Offline", "webex": "Offline", "sametime": "Offline");

// Table 7 - from a local third-party XMPP client to federated clients.
row!(t7_r1_available: "xmpp-local" "Available" => "jabber-fed": "Available", "xmpp-fed": "Available", "webex": "Available", "sametime": "Available");
row!(t7_r2_do_not_disturb: "xmpp-local" "Do Not Disturb" => "jabber-fed": "Do Not Disturb", "xmpp-fed": "Do Not Disturb", "webex": "Do Not Disturb", "sametime": "Do Not Disturb");
row!(t7_r3_away: "xmpp-local" "Away" => "jabber-fed": "Away", "xmpp-fed": "Away", "webex": "Away", "sametime": "Away");
row!(t7_r4_extended_away: "xmpp-local" "Extended Away" => "jabber-fed": "Away", "xmpp-fed": "Extended Away", "webex": "Extended Away", "sametime": "Away");
row!(t7_r5_away_idle: "xmpp-local" "Away", "Idle" => "jabber-fed": "Idle", "xmpp-fed": "Away \"Idle\"", "webex": "Away \"Idle\"", "sametime": "Away \"Idle\"");
row!(t7_r6_offline: "xmpp-local" "Offline" => "jabber-fed": "Offline", "xmpp-fed": "Offline", "webex": "Offline", "sametime": "Offline");

/// The seed's note: Lync Busy and Do Not Disturb reach an XMPP client as Away
/// with the status text "Busy", whatever status Lync had.
#[test]
fn status_text_busy_travels_from_lync() {
    for state in ["Busy", "Do Not Disturb"] {
        for extra in [None, Some("In a call")] {
            let mut args = vec!["--from", "lync", "--to", "xmpp-local", "--travel", state];
            args.extend(extra);
            assert_eq!(run(args.iter()).unwrap(), "Away \"Busy\"");
        }
    }
}
