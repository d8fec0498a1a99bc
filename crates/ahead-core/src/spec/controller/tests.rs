use super::*;

/// `widths` points of a curve whose every extra row costs `row` of a step (index 0 unused).
fn curve(row: f64, widths: usize) -> Vec<f64> {
    (0..widths)
        .map(|w| if w == 0 { 0.0 } else { 1.0 + row * (w as f64 - 1.0) })
        .collect()
}

/// Each row costs 0.3 of a step.
fn linear_curve() -> Vec<f64> {
    curve(0.3, 10)
}

#[test]
fn a_proposer_that_limits_itself_is_asked_for_all_it_offers() {
    let mut ramped = Controller::new(linear_curve(), 0.0);
    let mut c = Controller::new(linear_curve(), 0.0).with_offers_judged_by_length();
    assert_eq!(ramped.choose(), 1, "slow start");
    assert_eq!(c.choose(), c.max_k(), "no slow start, no cap beforehand");
    let mut model = Controller::new(linear_curve(), 0.0).with_proposer_limiting_length();
    assert_eq!(model.choose(), 2, "a confident model drafter: capped beforehand");
    // At the prior acceptance, the cost model's best prefix of a long offer; under load
    // a draft row pays less, so less of it.
    let alone = c.keep_offer(8, 0);
    assert!((1..8).contains(&alone), "{alone}");
    assert!(c.keep_offer(8, 6) < alone);
}

#[test]
fn a_self_limiting_proposers_offers_are_judged_by_their_length() {
    let mut c = Controller::new(linear_curve(), 0.0).with_offers_judged_by_length();
    // Its one-node drafts (weak matches) are never accepted, its four-node ones always.
    for _ in 0..40 {
        let k = c.keep_offer(1, 0);
        c.observe(k, 0);
        let k = c.keep_offer(4, 0);
        c.observe(k, k);
    }
    assert!(c.choose() > 0, "still asked every step");
    assert_eq!(c.keep_offer(4, 0), 4);
    let kept = (0..PROBE_EVERY)
        .filter(|_| {
            let k = c.keep_offer(1, 0);
            c.observe(k, 0);
            k > 0
        })
        .count();
    assert_eq!(kept, 1, "a declined length is still verified now and then");
    // Other proposers' drafts were sized beforehand: kept whole.
    let mut other = Controller::new(linear_curve(), 0.0);
    other.observe(1, 0);
    assert_eq!(other.keep_offer(3, 0), 3);
}

#[test]
fn a_free_offer_is_verified_when_it_promises_more_than_the_models_own_drafts() {
    // A model drafter that is never accepted, beside a free source that offers 4 nodes
    // every other step, always accepted.
    let mut c = Controller::new(linear_curve(), 0.05).with_free_offers();
    let mut free_steps = 0;
    for step in 0..60 {
        let k = c.choose();
        let offered = if step % 2 == 0 { 4 } else { 0 };
        match c.take_free_offer(offered, k, 0) {
            0 => c.observe(k, 0),
            keep => {
                free_steps += 1;
                c.observe(keep, keep);
            }
        }
    }
    assert!(free_steps >= 29, "{free_steps}");
    assert_eq!(c.take_free_offer(4, 0, 0), 4);
    // The model's own acceptance learned only from its own drafts.
    assert!(c.accept[0] < 0.3, "{:?}", c.accept);
    // A model that is always accepted beats free offers that never are, but for a probe
    // every `PROBE_EVERY` offers.
    let mut c = Controller::new(linear_curve(), 0.05).with_free_offers();
    for _ in 0..50 {
        c.observe(3, 3);
    }
    for _ in 0..PROBE_EVERY {
        let k = c.choose();
        let keep = c.take_free_offer(2, k, 0);
        c.observe(keep, 0);
    }
    let taken = (0..2 * PROBE_EVERY)
        .filter(|_| {
            let k = c.choose();
            let keep = c.take_free_offer(2, k, 0);
            if keep > 0 {
                c.observe(keep, 0);
            } else {
                c.observe(k, k);
            }
            keep > 0
        })
        .count();
    assert!(taken <= 3, "{taken}");
    assert!(c.choose() > 0, "the model still drafts");
    // A calibrating plain step (a timed controller's) verifies nothing, offered or not.
    let mut c = Controller::new(linear_curve(), 0.0).with_free_offers();
    c.observe_time(1, 1e-3, 0, 0.0);
    for _ in 0..30 {
        c.observe(2, 2);
    }
    let calibration = (0..=CALIBRATE_EVERY + 1).find(|_| c.choose() == 0);
    assert!(calibration.is_some());
    assert_eq!(c.take_free_offer(4, 0, 0), 0);
    // Without free offers, nothing is ever taken.
    assert_eq!(Controller::new(linear_curve(), 0.0).take_free_offer(4, 0, 0), 0);
}

#[test]
fn drafts_long_when_verification_is_cheap_and_acceptance_high() {
    let mut c = Controller::new(vec![0.0, 1.0, 1.05, 1.1, 1.15, 1.2], 0.02);
    assert_eq!(c.choose(), 1, "starts small");
    for _ in 0..50 {
        c.observe(4, 4);
    }
    assert_eq!(c.choose(), 4);
    // A fully rejected draft halves the allowed length.
    c.observe(4, 0);
    assert_eq!(c.choose(), 2);
}

#[test]
fn drafts_less_as_other_sequences_fill_the_forward() {
    // Each row costs a tenth of a lone step; the first draft is accepted 3 times in 4.
    // (A draft position accepted nearly always yields as much as another sequence's row,
    // and drafting it pays at any load.)
    let curve = curve(0.1, 18);
    let mut c = Controller::new(curve, 0.0);
    for _ in 0..30 {
        for (drafted, accepted) in [(8, 3), (8, 0), (8, 2), (8, 8)] {
            c.observe(drafted, accepted);
        }
    }
    let ks: Vec<usize> = [0, 2, 8, 32, 200]
        .iter()
        .map(|&l| c.choose_under_load(l))
        .collect();
    assert!(ks[0] >= 2, "alone it drafts: {ks:?}");
    assert!(
        ks.windows(2).all(|w| w[0] >= w[1]),
        "never more drafts under more load: {ks:?}"
    );
    assert_eq!(ks[4], 0, "a full batch decodes plainly: {ks:?}");
    // The same with load 0 as `choose`.
    let mut d = c.clone();
    assert_eq!(d.choose(), c.choose_under_load(0));
}

#[test]
fn side_rows_are_charged_to_drafting_steps_only() {
    let curve = curve(0.1, 18);
    let mut drafts_alone = Controller::new(curve.clone(), 0.0);
    for _ in 0..10 {
        drafts_alone.observe(4, 4);
    }
    assert!(
        drafts_alone.choose() > 0,
        "cheap rows and full acceptance: it drafts"
    );
    // The same, but every drafting step carries 200 more rows: drafting never pays, alone
    // or in a batch, and a plain step is not charged for rows it does not carry.
    let mut windowed = Controller::new(curve, 0.0).with_side_rows(200);
    for _ in 0..10 {
        windowed.observe(4, 4);
    }
    for others in [0, 8, 32] {
        assert_eq!(windowed.choose_under_load(others), 0, "load {others}");
    }
}

#[test]
fn stops_speculating_when_it_does_not_pay_and_probes_later() {
    // Verification is cheap enough that good acceptance would pay, but at no acceptance
    // no draft length beats plain decoding.
    let mut c = Controller::new(vec![0.0, 1.0, 1.3, 1.6, 1.9], 0.1);
    for _ in 0..50 {
        c.observe(3, 0);
    }
    let picks: Vec<usize> = (0..PROBE_EVERY).map(|_| c.choose()).collect();
    assert!(picks[..PROBE_EVERY - 1].iter().all(|&k| k == 0), "{picks:?}");
    assert_eq!(picks[PROBE_EVERY - 1], 1, "probes after a while");
    // A failed probe doubles the wait before the next one.
    c.observe(1, 0);
    let picks: Vec<usize> = (0..2 * PROBE_EVERY).map(|_| c.choose()).collect();
    assert_eq!(picks.iter().position(|&k| k == 1), Some(2 * PROBE_EVERY - 1));
}

#[test]
fn live_timings_override_an_optimistic_startup_curve() {
    // The startup curve says verification is nearly free; the forwards actually observed
    // cost in proportion to their width, and drafting is dear: speculation stops.
    let mut c = Controller::new(vec![0.0, 1.0, 1.05, 1.1, 1.15, 1.2], 0.05);
    for _ in 0..80 {
        let k = c.choose();
        c.observe(k, k.min(1));
        c.observe_time(k + 1, 1e-3 * (k + 1) as f64, k, 5e-4 * k as f64);
    }
    // Plain decoding, but for an occasional one-token probe.
    let picks: Vec<usize> = (0..PROBE_EVERY).map(|_| c.choose()).collect();
    assert!(picks.iter().filter(|&&k| k > 0).count() <= 1, "{picks:?}");
    // The same acceptance with the cheap verification the curve promised keeps drafting.
    let mut c = Controller::new(vec![0.0, 1.0, 1.05, 1.1, 1.15, 1.2], 0.05);
    for _ in 0..30 {
        let k = c.choose();
        c.observe(k, k.min(1));
        c.observe_time(k + 1, 1e-3 * (1.0 + 0.05 * k as f64), k, 5e-5 * k as f64);
    }
    assert!(c.choose() > 0);
}

#[test]
fn never_probes_when_even_full_acceptance_would_lose() {
    // Verifying k+1 rows costs k+1 single rows and drafting is not free: no k can pay.
    let mut c = Controller::new(vec![0.0, 1.0, 2.0, 3.0, 4.0], 0.1);
    let picks: Vec<usize> = (0..10 * PROBE_EVERY).map(|_| c.choose()).collect();
    assert!(picks.iter().all(|&k| k == 0), "{picks:?}");
}

#[test]
fn never_probes_when_the_side_rows_alone_outweigh_any_draft() {
    // Rows cost a tenth of a step each, so drafts alone could pay; but every drafting step
    // carries 76 side rows (lookahead's default window), which no accepted draft repays.
    let curve = curve(0.1, 10);
    let mut c = Controller::new(curve, 0.0).with_side_rows(76);
    let picks: Vec<usize> = (0..10 * PROBE_EVERY).map(|_| c.choose()).collect();
    assert!(picks.iter().all(|&k| k == 0), "{picks:?}");
}

#[test]
fn a_request_starts_from_what_earlier_requests_learned() {
    let curve = curve(0.2, 10);
    // An earlier request whose first draft was rejected every time.
    let mut earlier = Controller::new(curve.clone(), 0.05);
    for _ in 0..40 {
        earlier.observe(1, 0);
    }
    let mut learned = Learned::default();
    learned.fold(&earlier);
    assert_eq!(learned.requests(), 1);
    assert_eq!(
        learned.acceptance().len(),
        1,
        "only the drafted position is learned"
    );
    assert!(learned.acceptance()[0] < 0.01);
    // A fresh controller tries drafting on its optimistic prior; one that starts from the
    // learned acceptance decodes plainly from its first step (until a probe is due).
    assert_eq!(Controller::new(curve.clone(), 0.05).choose(), 1);
    let mut informed = Controller::new(curve.clone(), 0.05).starting_from(&learned);
    let picks: Vec<usize> = (0..PROBE_EVERY - 1).map(|_| informed.choose()).collect();
    assert!(picks.iter().all(|&k| k == 0), "{picks:?}");
    // A later request that accepted everything moves the estimate halfway (two requests).
    let mut later = Controller::new(curve, 0.05);
    for _ in 0..40 {
        later.observe(2, 2);
    }
    learned.fold(&later);
    assert_eq!(learned.acceptance().len(), 2);
    assert!(
        (learned.acceptance()[0] - 0.5).abs() < 0.01,
        "{:?}",
        learned.acceptance()
    );
    // Fixed draft lengths and requests that never drafted teach nothing.
    let before = learned.clone();
    let mut fixed = Controller::fixed(3);
    fixed.observe(3, 0);
    learned.fold(&fixed);
    learned.fold(&Controller::new(vec![0.0, 1.0, 1.2], 0.0));
    assert_eq!(learned, before);
}

#[test]
fn a_request_starts_from_the_offer_acceptance_earlier_requests_learned() {
    // An earlier request whose one-node offers were never accepted.
    let mut earlier = Controller::new(linear_curve(), 0.0).with_offers_judged_by_length();
    for _ in 0..40 {
        let k = earlier.keep_offer(1, 0);
        earlier.observe(k, 0);
    }
    let mut learned = Learned::default();
    learned.fold(&earlier);
    assert!(!learned.is_empty());
    // A fresh request tries them on the prior; one that starts from what was learned
    // declines them from its first step.
    assert_eq!(
        Controller::new(linear_curve(), 0.0)
            .with_offers_judged_by_length()
            .keep_offer(1, 0),
        1
    );
    let mut informed = Controller::new(linear_curve(), 0.0)
        .with_offers_judged_by_length()
        .starting_from(&learned);
    assert_eq!(informed.keep_offer(1, 0), 0);
    // Free offers verified beside a model drafter that never drafted are learned too.
    let mut free = Controller::new(linear_curve(), 0.05).with_free_offers();
    for _ in 0..10 {
        let k = free.choose();
        let keep = free.take_free_offer(3, k, 0);
        free.observe(keep, keep);
    }
    let mut learned = Learned::default();
    learned.fold(&free);
    assert!(!learned.is_empty());
    assert_eq!(
        learned.requests(),
        0,
        "the model's own acceptance measured nothing"
    );
}

#[test]
fn requests_shorter_than_the_probe_interval_still_probe() {
    // Rows so dear (a startup curve measured under load, say) that neither a draft of the
    // model's own nor a one-node free offer is judged to pay on the prior, though both could
    // if accepted. Each request is one step, and every draft is rejected.
    let dear = curve(0.8, 10);
    let probes = |free_offers: bool| {
        let mut learned = Learned::default();
        let mut verified = 0;
        for _ in 0..4 * PROBE_EVERY {
            let c = Controller::new(dear.clone(), 0.05);
            let mut c = if free_offers { c.with_free_offers() } else { c }.starting_from(&learned);
            let k = c.choose();
            let drafted = if free_offers {
                c.take_free_offer(1, k, 0)
            } else {
                k
            };
            if drafted > 0 {
                verified += 1;
                c.observe(drafted, 0);
            }
            learned.fold(&c);
        }
        verified
    };
    // The counts carry across requests: each source is measured again every `PROBE_EVERY`
    // requests (the interval doubles after a rejection only within a request).
    assert!(probes(true) >= 3, "free offers probed {} times", probes(true));
    assert!(
        probes(false) >= 2,
        "the model's drafts probed {} times",
        probes(false)
    );
}

#[test]
fn only_a_timed_controller_takes_calibrating_plain_steps() {
    let drafting = |timed: bool| {
        let mut c = Controller::new(linear_curve(), 0.0).with_proposer_limiting_length();
        for _ in 0..10 {
            c.observe(3, 3);
        }
        let mut plain = 0;
        for _ in 0..4 * CALIBRATE_EVERY {
            let k = c.choose();
            if timed {
                c.observe_time(k + 1, 1e-3 * (1.0 + 0.3 * k as f64), k, 0.0);
            }
            c.observe(k, k);
            plain += usize::from(k == 0);
        }
        plain
    };
    assert!(drafting(true) >= 3, "re-measures the 1-row time");
    assert_eq!(drafting(false), 0, "nominal costs need no measuring");
}

#[test]
fn fixed_always_drafts_k() {
    let mut c = Controller::fixed(3);
    c.observe(3, 0);
    assert_eq!(c.choose(), 3);
}
