use super::*;

#[test]
fn a_recorded_row_replaces_the_last_one_with_softmax_weights_over_its_candidates() {
    let mut table = Adjacency::new(4, 2);
    table.record(1, &[0.0, 2.0, 2.0f32.ln() + 2.0, -5.0]);
    let row: Vec<(u32, f32)> = table.candidates(1).collect();
    assert_eq!(row.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 1]);
    assert!((row[0].1 - 2.0 / 3.0).abs() < 1e-6 && (row[1].1 - 1.0 / 3.0).abs() < 1e-6);
    table.record(1, &[9.0, 0.0, 0.0, 0.0]);
    assert_eq!(
        table.candidates(1).next().map(|r| r.0),
        Some(0),
        "the latest row wins"
    );
    assert_eq!(table.candidates(0).count(), 0, "never seen");
    table.record(7, &[1.0; 4]);
    assert_eq!(table.candidates(7).count(), 0, "outside the table: ignored");
}

#[test]
fn seeding_fills_only_rows_the_target_left_empty_most_frequent_first() {
    let mut table = Adjacency::new(6, 2);
    table.record(1, &[0.0, 0.0, 0.0, 0.0, 0.0, 9.0]);
    table.seed(&[2, 3, 2, 4, 2, 4, 1, 2], 0.5);
    let row: Vec<(u32, f32)> = table.candidates(2).collect();
    assert_eq!(row, vec![(4, 0.5 * 2.0 / 3.0), (3, 0.5 / 3.0)]);
    assert_eq!(
        table.candidates(1).next().map(|r| r.0),
        Some(5),
        "the target's row is kept"
    );
}

/// A table where token t's candidates are (t + 1, 0.6) and (t + 2, 0.3).
fn chain_table() -> Adjacency {
    let mut table = Adjacency::new(16, 2);
    for t in 0..16u32 {
        let mut logits = vec![-10.0; 16];
        logits[((t + 1) % 16) as usize] = 0.6f32.ln();
        logits[((t + 2) % 16) as usize] = 0.3f32.ln();
        table.record(t, &logits);
    }
    table
}

#[test]
fn trees_grow_best_first_so_every_prefix_is_the_best_tree_of_its_size() {
    let table = chain_table();
    let tree = grow_tree(0, 5, 0.0, |path| {
        table.candidates(*path.last().unwrap()).collect()
    });
    assert!(tree.is_well_formed());
    // Scores: [1] 0.67, [1,2] 0.44, [2] 0.33, [1,2,3] 0.30, [1,3] 0.22 (weights 2/3, 1/3).
    assert_eq!(tree.tokens, vec![1, 2, 2, 3, 3]);
    assert_eq!(tree.parents, vec![None, Some(0), None, Some(1), Some(0)]);
    assert!(tree.q.iter().all(|q| *q == DraftDist::OneHot));
    let shorter = grow_tree(0, 3, 0.0, |path| {
        table.candidates(*path.last().unwrap()).collect()
    });
    assert_eq!(shorter.tokens, tree.tokens[..3]);
}

#[test]
fn trees_stop_below_the_minimum_score_and_where_nothing_is_known() {
    let table = chain_table();
    let tree = grow_tree(0, 10, 0.4, |path| {
        table.candidates(*path.last().unwrap()).collect()
    });
    assert_eq!(tree.tokens, vec![1, 2], "0.67 and 0.44 pass 0.4; 0.33 does not");
    let empty = Adjacency::new(16, 2);
    assert!(grow_tree(0, 10, 0.0, |path| empty
        .candidates(*path.last().unwrap())
        .collect())
    .is_empty());
}

#[test]
fn expansion_sees_the_whole_path_from_the_last_committed_token() {
    let mut paths = Vec::new();
    let table = chain_table();
    grow_tree(5, 3, 0.0, |path| {
        paths.push(path.to_vec());
        table.candidates(*path.last().unwrap()).collect()
    });
    // The third node joins without being expanded: the tree is full.
    assert_eq!(paths, vec![vec![5], vec![5, 6], vec![5, 6, 7]]);
}
