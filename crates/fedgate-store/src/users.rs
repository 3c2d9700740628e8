//! Local users and their SASL credentials.

use fedgate_policy::UserAddress;
use rusqlite::{OptionalExtension, params};

use crate::limits::check_len;
use crate::scram::{ScramCredentials, ScramMechanism};
use crate::sqlite::user;
use crate::{SqliteStore, StoreError};

/// Bytes of random salt per mechanism (RFC 5802 leaves the size open; 16 is common).
pub const SALT_LEN: usize = 16;

/// What a SASL server asks of the user store (read only).
pub trait CredentialStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The SCRAM credentials of `user` for `mechanism`; `None` for an unknown user.
    fn scram_credentials(
        &self,
        user: &UserAddress,
        mechanism: ScramMechanism,
    ) -> Result<Option<ScramCredentials>, Self::Error>;

    /// The PLAIN check: true when `password` is `user`'s. Checked against the
    /// SCRAM-SHA-256 credentials; an unknown user costs the same PBKDF2 work and is false.
    fn verify_plain(&self, user: &UserAddress, password: &str) -> Result<bool, Self::Error>;
}

/// Adding, removing and listing local users.
pub trait UserStore: CredentialStore {
    /// Adds `user` with `password`: derives SCRAM-SHA-1 and SCRAM-SHA-256 credentials with
    /// fresh random salts; the password itself is not stored. Fails with
    /// [`StoreError::UserExists`] for an existing user.
    fn add_user(&mut self, user: &UserAddress, password: &str) -> Result<(), Self::Error>;

    /// Replaces `user`'s credentials (new salts). [`StoreError::UnknownUser`] if absent.
    fn set_password(&mut self, user: &UserAddress, password: &str) -> Result<(), Self::Error>;

    /// Removes `user`, its credentials, roster and offline messages (one transaction).
    /// Returns false when there was no such user. Policy rules and subscriptions stay:
    /// they belong to the policy engine, which is told separately.
    fn remove_user(&mut self, user: &UserAddress) -> Result<bool, Self::Error>;

    /// True when `user` exists.
    fn user_exists(&self, user: &UserAddress) -> Result<bool, Self::Error>;

    /// Every user, sorted.
    fn list_users(&self) -> Result<Vec<UserAddress>, Self::Error>;
}

impl SqliteStore {
    fn derive_all(&self, password: &str) -> Result<Vec<ScramCredentials>, StoreError> {
        check_len(
            "password",
            password.len(),
            self.config.limits.max_password_bytes,
        )?;
        ScramMechanism::ALL
            .into_iter()
            .map(|m| {
                let mut salt = [0u8; SALT_LEN];
                getrandom::fill(&mut salt).map_err(|e| StoreError::Random(e.to_string()))?;
                Ok(ScramCredentials::derive(
                    m,
                    password.as_bytes(),
                    &salt,
                    self.config.scram_iterations,
                ))
            })
            .collect()
    }

    fn write_credentials(
        &mut self,
        user: &UserAddress,
        creds: &[ScramCredentials],
        create: bool,
    ) -> Result<(), StoreError> {
        let name = user.to_string();
        let tx = self.write_tx()?;
        let inserted = tx.execute("INSERT OR IGNORE INTO users (user) VALUES (?1)", [&name])?;
        match (create, inserted) {
            (true, 0) => return Err(StoreError::UserExists(name)),
            (false, 1) => return Err(StoreError::UnknownUser(name)),
            _ => {}
        }
        for c in creds {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO credentials
                   (user, mechanism, salt, iterations, stored_key, server_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                name,
                c.mechanism.name(),
                c.salt,
                c.iterations,
                c.stored_key,
                c.server_key
            ])?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl CredentialStore for SqliteStore {
    type Error = StoreError;

    fn scram_credentials(
        &self,
        user: &UserAddress,
        mechanism: ScramMechanism,
    ) -> Result<Option<ScramCredentials>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT salt, iterations, stored_key, server_key FROM credentials
                 WHERE user = ?1 AND mechanism = ?2",
            )?
            .query_row(params![user.to_string(), mechanism.name()], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .optional()?;
        let Some((salt, iterations, stored_key, server_key)) = row else {
            return Ok(None);
        };
        let iterations = u32::try_from(iterations)
            .ok()
            .filter(|i| *i > 0)
            .ok_or_else(|| StoreError::corrupt("credentials", "iteration count out of range"))?;
        if stored_key.len() != mechanism.output_len() || server_key.len() != mechanism.output_len()
        {
            return Err(StoreError::corrupt("credentials", "key length"));
        }
        Ok(Some(ScramCredentials {
            mechanism,
            salt,
            iterations,
            stored_key,
            server_key,
        }))
    }

    fn verify_plain(&self, user: &UserAddress, password: &str) -> Result<bool, StoreError> {
        if password.len() > self.config.limits.max_password_bytes {
            tracing::debug!(%user, "store: PLAIN password over the length limit");
            return Ok(false);
        }
        match self.scram_credentials(user, ScramMechanism::Sha256)? {
            Some(c) => Ok(c.verify_password(password.as_bytes())),
            None => {
                // Same work as for a real user, so timing does not tell who exists.
                let dummy = ScramCredentials::derive(
                    ScramMechanism::Sha256,
                    password.as_bytes(),
                    b"fedgate-no-such-user",
                    self.config.scram_iterations,
                );
                std::hint::black_box(dummy);
                Ok(false)
            }
        }
    }
}

impl UserStore for SqliteStore {
    fn add_user(&mut self, user: &UserAddress, password: &str) -> Result<(), StoreError> {
        let creds = self.derive_all(password)?;
        self.write_credentials(user, &creds, true)?;
        tracing::info!(%user, "store: user added");
        Ok(())
    }

    fn set_password(&mut self, user: &UserAddress, password: &str) -> Result<(), StoreError> {
        let creds = self.derive_all(password)?;
        self.write_credentials(user, &creds, false)
    }

    fn remove_user(&mut self, user: &UserAddress) -> Result<bool, StoreError> {
        let name = user.to_string();
        let tx = self.write_tx()?;
        let removed = tx.execute("DELETE FROM users WHERE user = ?1", [&name])?;
        // credentials go by ON DELETE CASCADE, groups by cascade from roster_items
        tx.execute("DELETE FROM roster_items WHERE user = ?1", [&name])?;
        tx.execute("DELETE FROM roster_versions WHERE user = ?1", [&name])?;
        tx.execute("DELETE FROM offline_messages WHERE user = ?1", [&name])?;
        tx.commit()?;
        if removed > 0 {
            tracing::info!(%user, "store: user removed");
        }
        Ok(removed > 0)
    }

    fn user_exists(&self, user: &UserAddress) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM users WHERE user = ?1")?
            .exists([user.to_string()])?)
    }

    fn list_users(&self) -> Result<Vec<UserAddress>, StoreError> {
        let mut st = self.conn.prepare_cached("SELECT user FROM users")?;
        let mut out = st
            .query_map([], |r| r.get::<_, String>(0))?
            .map(|s| user("users", &s?))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        Ok(out)
    }
}
