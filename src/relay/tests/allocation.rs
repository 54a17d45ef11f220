//! Nameplate allocation: shortest first, random order, growth to more digits, per-app-id
//! scope, reuse after release, and listing.

use std::collections::BTreeSet;

use super::*;

fn allocate_many(h: &mut Harness, appid: &str, count: u64, first_conn: ConnId) -> Vec<String> {
    (0..count)
        .map(|i| {
            let conn = first_conn + i;
            h.connect_bound(conn, appid, &format!("side{conn}"));
            h.allocate(conn)
        })
        .collect()
}

#[test]
fn allocation_is_shortest_first() {
    let mut h = Harness::new();
    let first = allocate_many(&mut h, "a", 9, 1);
    let set: BTreeSet<u32> = first.iter().map(|n| n.parse().unwrap()).collect();
    assert_eq!(set, (1..=9).collect(), "the first 9 are 1–9: {first:?}");
    let tenth = allocate_many(&mut h, "a", 1, 100);
    assert_eq!(tenth[0].len(), 2, "{tenth:?}");
    assert!((10..=99).contains(&tenth[0].parse::<u32>().unwrap()));
}

#[test]
fn allocation_is_random_not_ascending() {
    let orders: BTreeSet<Vec<String>> = (0u8..4)
        .map(|seed| {
            let mut h = Harness::with(RelayConfig::default(), [seed; 32]);
            allocate_many(&mut h, "a", 9, 1)
        })
        .collect();
    assert!(orders.len() > 1, "different seeds give different orders");
    let ascending: Vec<String> = (1..=9).map(|n| n.to_string()).collect();
    assert!(orders.iter().any(|order| *order != ascending));
    // Deterministic for a seed.
    let again = allocate_many(
        &mut Harness::with(RelayConfig::default(), [0; 32]),
        "a",
        9,
        1,
    );
    assert!(orders.contains(&again));
}

#[test]
fn allocation_goes_to_three_digits_and_beyond() {
    let mut h = Harness::new();
    // Fill 1–999 by claiming directly (cheaper than allocating).
    h.connect_bound(1, "a", "filler");
    for n in 1..=999 {
        let conn = 10_000 + n;
        h.connect_bound(conn, "a", "filler");
        h.claim(conn, &n.to_string());
    }
    let next = allocate_many(&mut h, "a", 1, 2)[0].parse::<u32>().unwrap();
    assert!((1000..1_000_000).contains(&next), "{next}");
}

#[test]
fn nameplates_are_scoped_per_appid() {
    let mut h = Harness::new();
    h.connect_bound(1, "app1", "s1");
    let m1 = h.claim(1, "4");
    h.connect_bound(2, "app2", "s2");
    let m2 = h.claim(2, "4");
    assert_ne!(m1, m2, "the same number in two app ids is two nameplates");
    h.connect_bound(3, "app3", "s3");
    assert!(h.list(3).is_empty());
    assert_eq!(h.list(1), vec!["4"]);
    // Allocation in one app ignores the others.
    let first = allocate_many(&mut h, "app3", 9, 10);
    assert!(first.contains(&"4".to_owned()));
}

#[test]
fn release_frees_the_nameplate_for_reallocation() {
    let mut h = Harness::new();
    let all = allocate_many(&mut h, "a", 9, 1);
    // Release one of them: it is the only free one-digit id, so the next allocation takes it.
    let conn = 5;
    let freed = all[4].clone();
    h.expect(
        conn,
        json!({"type": "release", "nameplate": freed}),
        json!({"type": "released"}),
    );
    assert_eq!(h.list(conn).len(), 8);
    assert_eq!(allocate_many(&mut h, "a", 1, 50), vec![freed]);
}

#[test]
fn nameplate_stays_until_every_claimed_side_released() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sa");
    let n = h.allocate(1);
    h.connect_bound(2, "a", "sb");
    h.claim(2, &n);
    h.expect(
        1,
        json!({"type": "release", "nameplate": n}),
        json!({"type": "released"}),
    );
    assert_eq!(h.list(1), vec![n.clone()]);
    h.expect(2, json!({"type": "release"}), json!({"type": "released"}));
    assert!(h.list(1).is_empty());
}

#[test]
fn allocate_then_release_without_claim_needs_nameplate() {
    // As in Python, `allocate` claims in the store but does not count as this connection's claim.
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    let n = h.allocate(1);
    h.error(1, json!({"type": "release"}), errors::RELEASE_NEEDS_CLAIM);
    h.claim(1, &n);
    h.expect(1, json!({"type": "release"}), json!({"type": "released"}));
}

#[test]
fn list_is_sorted_as_strings_and_can_be_disallowed() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    for (conn, n) in [(2, "2"), (3, "10"), (4, "1")] {
        h.connect_bound(conn, "a", "s");
        h.claim(conn, n);
    }
    assert_eq!(h.list(1), vec!["1", "10", "2"]);

    let config = RelayConfig {
        allow_list: false,
        ..RelayConfig::default()
    };
    let mut h = Harness::with(config, [1; 32]);
    h.connect_bound(1, "a", "s");
    h.claim(1, "3");
    assert!(h.list(1).is_empty());
}
