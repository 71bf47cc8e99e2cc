//! Token mint and verify: `cargo bench --bench tokens`.
//!
//! Prints nanoseconds per operation and operations per second on one core, the median of
//! several rounds.

use optout_milter::token::{Keyring, TokenCodec};
use std::{
    hint::black_box,
    time::{Duration, Instant, SystemTime},
};

const ROUNDS: usize = 9;
const PER_ROUND: u64 = 200_000;

fn measure(mut op: impl FnMut(u64)) -> f64 {
    let mut per_op: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..PER_ROUND {
                op(i);
            }
            start.elapsed().as_nanos() as f64 / PER_ROUND as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    per_op[ROUNDS / 2]
}

fn main() {
    let keys = Keyring::from_secrets(1, [(1, vec![7; 32]), (2, vec![9; 32])]);
    let codec = TokenCodec::new(keys, Duration::from_secs(60 * 86_400));
    let now = SystemTime::now();
    let tokens: Vec<String> = (0..1024)
        .map(|i| codec.mint(i, now).expect("mint"))
        .collect();
    let mint = measure(|i| {
        black_box(codec.mint(black_box(i), now).expect("mint"));
    });
    let verify = measure(|i| {
        black_box(
            codec
                .verify(black_box(&tokens[(i % 1024) as usize]), now)
                .expect("verify"),
        );
    });
    println!("token mint:   {mint:7.0} ns/op  {:>10.0} ops/s", 1e9 / mint);
    println!(
        "token verify: {verify:7.0} ns/op  {:>10.0} ops/s",
        1e9 / verify
    );
}
