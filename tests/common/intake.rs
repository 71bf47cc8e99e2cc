//! The daemon's intake (assembled by [`App`], index included) over a fresh SQLite store,
//! with helpers to mint tokens and read back what was
//! recorded: shared by the intake and LMTP tests.

use optout_milter::{
    config::{Config, Overrides},
    consent::{AddressPolicy, ConsentValue, Scope},
    daemon::App,
    intake::Intake,
    store::{self, ConsentStore},
    unsubscribe::Unsubscribe,
};
use std::{path::Path, sync::Arc, time::SystemTime};

/// The parts of an intake, and the directory holding its store and key.
pub struct IntakeFixture {
    pub config: Config,
    /// The daemon the intake belongs to, for a test that serves it (taken by then).
    pub app: Option<App>,
    pub intake: Arc<Intake>,
    pub store: Arc<dyn ConsentStore>,
    pub unsubscribe: Arc<Unsubscribe>,
    pub db_url: String,
    pub dir: tempfile::TempDir,
    /// The database under `OPTOUT_TEST_STORE=postgres`.
    pub postgres: Option<super::postgres::TestDb>,
}

/// The `[unsubscribe]` section of every intake fixture.
const UNSUBSCRIBE: &str = r#"
[unsubscribe]
https_base = "https://unsubscribe.example.com"
mailto = "unsubscribe@example.com"
generate_missing_key = true
[[unsubscribe.keys]]
id = 1
file = "@DIR@/token.key"
"#;

/// An intake with the mailto `unsubscribe@example.com`, `max_bytes = 16384` and the given
/// further `[intake]` keys.
pub async fn intake_fixture(intake_keys: &str) -> IntakeFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db_url, postgres) =
        super::postgres::fixture_store(format!("sqlite:{}", dir.path().join("c.db").display()))
            .await;
    let text = format!("{UNSUBSCRIBE}\n[intake]\nmax_bytes = 16384\n{intake_keys}\n")
        .replace("@DIR@", &dir.path().to_string_lossy());
    let overrides = Overrides {
        store_url: Some(db_url.clone()),
        socket: Some("inet:127.0.0.1:0".into()),
    };
    let config = Config::parse(Path::new("t.toml"), &text, &overrides).expect("config");
    let store = store::open_or_create(&db_url).await.expect("store");
    let app = App::build(config.clone(), overrides, store.clone())
        .await
        .expect("assemble");
    let intake = app.intake().expect("[intake]").load_full();
    let unsubscribe = app.milter().load().unsubscribe.clone().expect("keys");
    IntakeFixture {
        config,
        app: Some(app),
        intake,
        store,
        unsubscribe,
        db_url,
        dir,
        postgres,
    }
}

impl IntakeFixture {
    /// A token for `address` and `list`, issued at `issued`.
    pub async fn token(&self, address: &str, list: &str, issued: SystemTime) -> String {
        let address = AddressPolicy::default()
            .normalize(address)
            .expect("address");
        let subject = self
            .store
            .subject_id(&address, &list.parse().expect("list"))
            .await
            .expect("subject");
        self.unsubscribe.codec.mint(subject, issued).expect("mint")
    }

    /// The value recorded for `address` at `scope`, if any.
    pub async fn value(&self, address: &str, scope: &str) -> Option<ConsentValue> {
        let address = AddressPolicy::default()
            .normalize(address)
            .expect("address");
        let scope: Scope = scope.parse().expect("scope");
        let records = self.store.records(&address).await.expect("records");
        records
            .into_iter()
            .find(|r| r.scope == scope)
            .map(|r| r.value)
    }

    /// Drops the store's current-state table under the intake: every write now fails.
    pub async fn break_store(&self) {
        super::drop_tables(&self.db_url, &["consent"]).await;
    }
}
