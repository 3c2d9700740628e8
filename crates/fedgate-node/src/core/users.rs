//! [`UserDirectory`]: the local accounts and their SCRAM credentials, kept in memory and
//! filled from the store through the [`StoreHandle`] writer thread, so that
//! [`CredentialVerifier`] (a synchronous call inside the c2s machine) never touches
//! SQLite on an executor thread.
//!
//! Freshness: [`UserDirectory::load`] reads every account at start. A lookup that misses
//! queues one background re-read (at most one in flight, so a client trying random names
//! cannot fill the store's queue); [`UserDirectory::reload`] re-reads everything (the c2s
//! listener calls it periodically). An account added with the CLI while the node runs is
//! therefore usable from the second login attempt, or after the next periodic reload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use fedgate_policy::UserAddress;
use fedgate_store::{
    CredentialStore, ScramCredentials as StoredCreds, ScramMechanism, StoreError, StoreHandle,
    UserStore,
};
use fedgate_xmpp::BareJid;
use fedgate_xmpp::sasl::{CredentialVerifier, ScramCredentials, ScramHash};

/// The credentials of one account.
#[derive(Debug, Clone)]
struct Account {
    domain: String,
    sha1: Option<StoredCreds>,
    sha256: Option<StoredCreds>,
}

type Table = HashMap<String, Vec<Account>>;

/// Local accounts by localpart, in memory; see the module docs.
#[derive(Debug)]
pub struct UserDirectory {
    store: StoreHandle,
    table: Arc<RwLock<Table>>,
    refreshing: Arc<AtomicBool>,
}

fn read_all(s: &mut fedgate_store::SqliteStore) -> Result<Table, StoreError> {
    let mut t = Table::new();
    for u in s.list_users()? {
        let acc = account(s, &u)?;
        t.entry(u.local_part().to_owned()).or_default().push(acc);
    }
    Ok(t)
}

fn account(s: &fedgate_store::SqliteStore, u: &UserAddress) -> Result<Account, StoreError> {
    Ok(Account {
        domain: u.domain().as_str().to_owned(),
        sha1: s.scram_credentials(u, ScramMechanism::Sha1)?,
        sha256: s.scram_credentials(u, ScramMechanism::Sha256)?,
    })
}

impl UserDirectory {
    /// Reads every account through `store` (awaits the writer thread).
    pub async fn load(store: StoreHandle) -> Result<Arc<Self>, StoreError> {
        let dir = Arc::new(UserDirectory {
            store,
            table: Arc::new(RwLock::new(Table::new())),
            refreshing: Arc::new(AtomicBool::new(false)),
        });
        dir.reload().await?;
        Ok(dir)
    }

    /// Re-reads every account.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let t = self.store.submit(read_all)?.await?;
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = t;
        Ok(())
    }

    /// Number of accounts known.
    pub fn len(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }

    /// No account at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `jid` is a local account (as last read).
    pub fn exists(&self, jid: &BareJid) -> bool {
        let Some(local) = jid.local() else {
            return false;
        };
        let found = self
            .read()
            .get(local)
            .is_some_and(|v| v.iter().any(|a| a.domain == jid.domain().as_str()));
        if !found {
            self.refresh_in_background(local);
        }
        found
    }

    /// Adds an account (durable when it returns) and makes it usable at once.
    pub async fn add_user(&self, user: &UserAddress, password: &str) -> Result<(), StoreError> {
        let (u, p) = (user.clone(), password.to_owned());
        let acc = self
            .store
            .submit(move |s| {
                s.add_user(&u, &p)?;
                account(s, &u)
            })?
            .await?;
        let mut t = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let v = t.entry(user.local_part().to_owned()).or_default();
        v.retain(|a| a.domain != acc.domain);
        v.push(acc);
        Ok(())
    }

    /// Queues one re-read of `local` (none if one is already in flight or the queue is
    /// full). The request writes its answer into the table itself.
    fn refresh_in_background(&self, local: &str) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (table, flag, local) = (
            Arc::clone(&self.table),
            Arc::clone(&self.refreshing),
            local.to_owned(),
        );
        let flag2 = Arc::clone(&flag);
        let job = self.store.submit(move |s| {
            let accounts: Vec<Account> = s
                .list_users()?
                .iter()
                .filter(|u| u.local_part() == local)
                .map(|u| account(s, u))
                .collect::<Result<_, _>>()?;
            let mut t = table.write().unwrap_or_else(PoisonError::into_inner);
            if accounts.is_empty() {
                t.remove(&local);
            } else {
                t.insert(local, accounts);
            }
            flag2.store(false, Ordering::Release);
            Ok(())
        });
        match job {
            // The request runs on the writer thread whether or not the reply is awaited.
            Ok(reply) => drop(reply),
            Err(_) => flag.store(false, Ordering::Release),
        }
    }

    /// The one account with this localpart: `None` if unknown or if several hosted
    /// domains have it (the verifier is not told the domain; see the module docs of
    /// [`crate::c2s`]).
    fn unique(&self, local: &str) -> Option<Account> {
        let t = self.read();
        match t.get(local).map(Vec::as_slice) {
            Some([a]) => Some(a.clone()),
            Some([]) | None => {
                drop(t);
                self.refresh_in_background(local);
                None
            }
            Some(_) => {
                tracing::warn!(
                    user = local,
                    "c2s: localpart exists in several hosted domains; login refused"
                );
                None
            }
        }
    }
}

fn convert(c: &StoredCreds) -> ScramCredentials {
    ScramCredentials {
        hash: match c.mechanism {
            ScramMechanism::Sha1 => ScramHash::Sha1,
            ScramMechanism::Sha256 => ScramHash::Sha256,
        },
        salt: c.salt.clone(),
        iterations: c.iterations,
        stored_key: c.stored_key.clone(),
        server_key: c.server_key.clone(),
    }
}

impl CredentialVerifier for UserDirectory {
    fn scram(&self, user: &str, hash: ScramHash) -> Option<ScramCredentials> {
        let a = self.unique(user)?;
        match hash {
            ScramHash::Sha1 => a.sha1.as_ref().map(convert),
            ScramHash::Sha256 => a.sha256.as_ref().map(convert),
        }
    }

    /// PBKDF2 over the cached SCRAM-SHA-256 credentials (CPU only, no I/O).
    fn check_plain(&self, user: &str, password: &str) -> bool {
        self.unique(user)
            .and_then(|a| a.sha256)
            .is_some_and(|c| c.verify_password(password.as_bytes()))
    }
}
