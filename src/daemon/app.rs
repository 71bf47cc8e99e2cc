//! [`App`]: every part the daemon serves, assembled once from a config and a store, and
//! swapped as a whole at a reload.
//!
//! There is one of each: one consent index in front of the store, one set of token keys,
//! one intake (the milter and the LMTP server hand unsubscribe mails to the same one, so a
//! sender gets at most one confirmation link an hour whichever way the mail came), one
//! web front. `serve`, the tests and the benches all build the daemon here, so what is
//! tested is what runs.

use super::DaemonError;
use crate::{
    api::{ApiFront, ApiState},
    config::{Config, Overrides, reload},
    intake::Intake,
    lmtp::SharedIntake,
    milter::{Milter, SharedMilter},
    store::{self, ConsentStore},
    unsubscribe::Unsubscribe,
    web::{self, WebFront, WebState},
};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tracing::warn;

/// The assembled daemon, ready to be served by [`super::run`].
pub struct App {
    config: Arc<Config>,
    overrides: Overrides,
    store: Arc<dyn ConsentStore>,
    milter: Arc<SharedMilter>,
    web: Option<Arc<WebFront>>,
    tls: Option<TlsAcceptor>,
    intake: Option<Arc<SharedIntake>>,
    api: Option<Arc<ApiFront>>,
    api_tls: Option<TlsAcceptor>,
    /// Taken by [`super::run`], which delivers them.
    webhooks: Vec<crate::webhooks::Webhook>,
}

impl App {
    /// Assembles the daemon over `store` (opened by the caller), with the consent index in
    /// front of it; loads the token keys (creating the first when the config says so) and
    /// the TLS files. `overrides` are applied again at each reload.
    pub async fn build(
        config: Config,
        overrides: Overrides,
        store: Arc<dyn ConsentStore>,
    ) -> Result<Self, DaemonError> {
        for warning in config.warnings() {
            warn!(config = %config.path.display(), "{warning}");
        }
        let store: Arc<dyn ConsentStore> = store::index::IndexedStore::wrap(store).await?;
        let config = Arc::new(config);
        let unsubscribe = load_unsubscribe(&config)?;
        let tls = match &config.web {
            Some(web) => web::tls(web.tls.as_ref()).map_err(DaemonError::Tls)?,
            None => None,
        };
        let intake = match (&config.intake, &unsubscribe) {
            (Some(intake), Some(unsubscribe)) => Some(Arc::new(Intake::new(
                intake.clone(),
                store.clone(),
                unsubscribe.clone(),
                config.addresses.clone(),
            ))),
            _ => None,
        };
        let sms = web::sms::SmsFront::load(&config)?;
        let web = match (&config.web, &unsubscribe) {
            (Some(web), Some(unsubscribe)) => Some(Arc::new(WebFront::new(WebState::new(
                web.clone(),
                store.clone(),
                unsubscribe.clone(),
                Arc::new(web::pages::Pages::load(web)?),
                sms,
            )))),
            _ => None,
        };
        let erasure = load_erasure(&config)?;
        let api = ApiState::new(&config, store.clone(), erasure.clone())?
            .map(|state| Arc::new(ApiFront::new(state)));
        let api_tls = match &config.api {
            Some(api) => web::tls(api.tls.as_ref()).map_err(DaemonError::Tls)?,
            None => None,
        };
        let milter = Arc::new(SharedMilter::from_pointee(Milter::new(
            config.clone(),
            store.clone(),
            unsubscribe,
            intake.clone(),
            erasure.clone(),
        )));
        let webhooks = crate::webhooks::prepare(store.as_ref(), &config.webhooks).await?;
        Ok(Self {
            api,
            api_tls,
            webhooks,
            config,
            overrides,
            store,
            milter,
            web,
            tls,
            intake: intake.map(|intake| Arc::new(SharedIntake::new(intake))),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The store, behind the consent index.
    pub fn store(&self) -> &Arc<dyn ConsentStore> {
        &self.store
    }

    /// The milter's shared settings (each connection takes a snapshot).
    pub fn milter(&self) -> &Arc<SharedMilter> {
        &self.milter
    }

    /// The web front, when `[web]` and `[unsubscribe]` are configured.
    pub fn web(&self) -> Option<&Arc<WebFront>> {
        self.web.as_ref()
    }

    /// The web front's TLS acceptor, when `[web]` has TLS files.
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// The webhooks, with their secrets loaded; taken once, by whoever delivers them.
    pub fn take_webhooks(&mut self) -> Vec<crate::webhooks::Webhook> {
        std::mem::take(&mut self.webhooks)
    }

    /// The admin API, when `[api]` is configured.
    pub fn api(&self) -> Option<&Arc<ApiFront>> {
        self.api.as_ref()
    }

    /// The admin API's TLS acceptor, when `[api]` has TLS files.
    pub fn api_tls(&self) -> Option<&TlsAcceptor> {
        self.api_tls.as_ref()
    }

    /// The one intake for unsubscribe mails, when `[intake]` and `[unsubscribe]` are
    /// configured.
    pub fn intake(&self) -> Option<&Arc<SharedIntake>> {
        self.intake.as_ref()
    }

    /// Reads the config file again and, when it is valid (keys included), swaps it in for
    /// the next connection and request; else the running one stays and the error says
    /// why. Settings that need a restart keep their running values and are listed.
    pub fn reload(&mut self) -> Result<reload::Changes, DaemonError> {
        let new = Config::load(&self.config.path, &self.overrides)?;
        let (new, changes) = reload::reconcile(&self.config, new);
        let unsubscribe = load_unsubscribe(&new)?;
        // The erasure key never changes at a reload (see config::reload): the running one.
        let erasure = self.milter.load().erasure.clone();
        let api = ApiState::new(&new, self.store.clone(), erasure.clone())?;
        let sms = web::sms::SmsFront::load(&new)?;
        let pages = new
            .web
            .as_ref()
            .map(|w| web::pages::Pages::load(w).map(Arc::new))
            .transpose()?;
        let new = Arc::new(new);
        let intake = match (&self.intake, &new.intake, &unsubscribe) {
            (Some(shared), Some(config), Some(u)) => {
                let intake = Arc::new(shared.load().reloaded(
                    config.clone(),
                    u.clone(),
                    new.addresses.clone(),
                ));
                shared.store(intake.clone());
                Some(intake)
            }
            _ => None,
        };
        if let (Some(front), Some(web), Some(u)) = (&self.web, &new.web, &unsubscribe) {
            front.reload(
                web.clone(),
                u.clone(),
                pages
                    .clone()
                    .unwrap_or_else(|| front.current().pages.clone()),
                sms,
            );
        }
        if let (Some(front), Some(state)) = (&self.api, api) {
            front.reload(state);
        }
        self.milter.store(Arc::new(Milter::new(
            new.clone(),
            self.store.clone(),
            unsubscribe,
            intake,
            erasure,
        )));
        for warning in new.warnings() {
            warn!(config = %new.path.display(), "{warning}");
        }
        self.config = new;
        Ok(changes)
    }
}

/// The erasure key of `config`, loaded, when configured.
pub fn load_erasure(
    config: &Config,
) -> Result<Option<Arc<crate::consent::Erasure>>, crate::token::KeyError> {
    config
        .erasure_key
        .as_deref()
        .map(|path| {
            crate::token::keys::read_key(path)
                .map(|key| Arc::new(crate::consent::Erasure::new(key)))
        })
        .transpose()
}

/// The token keys of `config`, loaded (and the first created, if the config says so).
fn load_unsubscribe(config: &Config) -> Result<Option<Arc<Unsubscribe>>, DaemonError> {
    Ok(config
        .unsubscribe
        .clone()
        .map(Unsubscribe::load)
        .transpose()?
        .map(Arc::new))
}
