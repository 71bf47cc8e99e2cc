//! Fills a store with synthetic opt-outs for the benchmarks:
//! `cargo bench --bench fill -- sqlite:/path/consent.db 1000000`.
//!
//! Addresses are `r{i}@bench.example` for i in 0..N, each with `n` for all marketing (`*`),
//! written in large transactions straight into the schema (no history rows: this is
//! benchmark data, not a record of anyone's choice).

mod support;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let url = args.next().expect("usage: fill STORE_URL COUNT");
    let count: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: fill STORE_URL COUNT");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(support::fill(&url, count));
}
