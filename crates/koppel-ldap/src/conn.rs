//! The connection: TLS (LDAPS or StartTLS, a CA file or the system roots), the simple bind,
//! and operation wrappers that reconnect after a lost connection and sort every error.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{EntriesOnly, PagedResults};
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::sync::Mutex;

use crate::config::LdapConfig;
use crate::error::{INVALID_CREDENTIALS, LdapError, NO_SUCH_OBJECT};

/// The Permissive Modify control: adding a present value or deleting an absent one succeeds.
pub const PERMISSIVE_MODIFY: &str = "1.2.840.113556.1.4.1413";
/// AD's Tree Delete control: delete an entry with its children (e.g. a user's device objects).
pub const TREE_DELETE: &str = "1.2.840.113556.1.4.805";
/// RFC 4527 Post-Read.
pub const POST_READ: &str = "1.3.6.1.1.13.2";

/// What the server said it supports, read from the root DSE at connect.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub post_read: bool,
    pub permissive_modify: bool,
    pub tree_delete: bool,
}

/// One open, bound connection; `Ldap` handles multiplex it.
struct Open {
    ldap: Ldap,
    caps: Arc<Capabilities>,
    tls: bool,
}

/// The connection to one directory, opened on demand and again after it was lost.
pub struct Client {
    config: LdapConfig,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    open: Mutex<Option<Open>>,
}

pub fn control(oid: &str) -> RawControl {
    RawControl {
        ctype: oid.to_owned(),
        crit: false,
        val: None,
    }
}

impl Client {
    pub fn new(config: LdapConfig) -> Result<Client, LdapError> {
        let tls = if config.uses_tls() {
            Some(tls_config(&config)?)
        } else {
            None
        };
        Ok(Client {
            timeout: Duration::from_secs(config.timeout_seconds),
            config,
            tls,
            open: Mutex::new(None),
        })
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// A handle on the open connection, connecting and binding first if there is none.
    pub async fn handle(&self) -> Result<(Ldap, Arc<Capabilities>, bool), LdapError> {
        let mut open = self.open.lock().await;
        if let Some(o) = open.as_mut()
            && !o.ldap.is_closed()
        {
            return Ok((o.ldap.clone(), o.caps.clone(), o.tls));
        }
        *open = None;
        let o = self.connect().await?;
        let out = (o.ldap.clone(), o.caps.clone(), o.tls);
        *open = Some(o);
        Ok(out)
    }

    /// Forgets the connection after a loss, so the next call opens a new one.
    async fn lost(&self, e: &LdapError) {
        if e.is_connection_loss() {
            // The message names the URL and the cause, never the bind password.
            tracing::warn!(url = %self.config.url, error = %e, "LDAP connection lost; the next operation reconnects");
            let mut open = self.open.lock().await;
            if let Some(mut o) = open.take() {
                // Best effort: the server may be gone already.
                let _ = tokio::time::timeout(Duration::from_millis(200), o.ldap.unbind()).await;
            }
        }
    }

    async fn connect(&self) -> Result<Open, LdapError> {
        let url = &self.config.url;
        let password = self.config.password()?;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.config.uses_starttls());
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| connect_error(e, url))?;
        ldap3::drive!(conn);
        let bind = ldap
            .with_timeout(self.timeout)
            .simple_bind(&self.config.bind_dn, &password)
            .await
            .map_err(|e| connect_error(e, url))?;
        drop(password);
        if bind.rc == INVALID_CREDENTIALS {
            return Err(LdapError::InvalidCredentials {
                bind_dn: self.config.bind_dn.clone(),
                detail: if bind.text.trim().is_empty() {
                    String::new()
                } else {
                    format!(" ({})", bind.text.trim())
                },
            });
        }
        if bind.rc != 0 {
            return Err(LdapError::server(bind.rc, &bind.text, &bind.matched));
        }
        let caps = root_dse(&mut ldap, self.timeout, url).await?;
        Ok(Open {
            ldap,
            caps: Arc::new(caps),
            tls: self.config.uses_tls(),
        })
    }

    async fn prepared(&self) -> Result<(Ldap, Arc<Capabilities>), LdapError> {
        let (mut ldap, caps, _) = self.handle().await?;
        ldap.with_timeout(self.timeout);
        Ok((ldap, caps))
    }

    async fn finish<T>(&self, r: Result<T, ldap3::LdapError>) -> Result<T, LdapError> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                let e = LdapError::from_ldap3(e, &self.config.url);
                self.lost(&e).await;
                Err(e)
            }
        }
    }

    async fn checked(
        &self,
        r: Result<ldap3::LdapResult, ldap3::LdapError>,
    ) -> Result<ldap3::LdapResult, LdapError> {
        let res = self.finish(r).await?;
        if res.rc == 0 {
            Ok(res)
        } else {
            let e = LdapError::server(res.rc, &res.text, &res.matched);
            self.lost(&e).await;
            Err(e)
        }
    }

    /// A search whose results fit in memory; continuation references are skipped (Samba
    /// returns them at the domain root) and a missing base gives no entries.
    pub async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, LdapError> {
        let (mut ldap, _) = self.prepared().await?;
        let attrs: Vec<String> = attrs.iter().map(|s| (*s).to_owned()).collect();
        let r = async {
            let mut stream = ldap
                .streaming_search_with(EntriesOnly::new(), base, scope, filter, attrs)
                .await?;
            let mut entries = Vec::new();
            while let Some(entry) = stream.next().await? {
                if entry.0.id == 4 {
                    entries.push(SearchEntry::construct(entry));
                }
            }
            Ok((entries, stream.finish().await))
        }
        .await;
        let (entries, res) = self.finish(r).await?;
        match res.rc {
            0 | 10 => Ok(entries),
            NO_SUCH_OBJECT => Ok(Vec::new()),
            rc => {
                let e = LdapError::server(rc, &res.text, &res.matched);
                self.lost(&e).await;
                Err(e)
            }
        }
    }

    /// A paged search (RFC 2696) of a subtree, every entry handed to `each`.
    pub async fn paged_search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
        mut each: impl FnMut(SearchEntry),
    ) -> Result<(), LdapError> {
        let (mut ldap, _) = self.prepared().await?;
        let attrs: Vec<String> = attrs.iter().map(|s| (*s).to_owned()).collect();
        let page = self.config.page_size;
        let r = async {
            let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> = vec![
                Box::new(EntriesOnly::new()),
                Box::new(PagedResults::new(page)),
            ];
            let mut stream = ldap
                .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
                .await?;
            while let Some(entry) = stream.next().await? {
                if entry.0.id == 4 {
                    each(SearchEntry::construct(entry));
                }
            }
            Ok(stream.finish().await)
        }
        .await;
        let res = self.finish(r).await?;
        match res.rc {
            0 | 10 | NO_SUCH_OBJECT => Ok(()),
            rc => {
                let e = LdapError::server(rc, &res.text, &res.matched);
                self.lost(&e).await;
                Err(e)
            }
        }
    }

    pub async fn add(
        &self,
        dn: &str,
        attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)>,
        controls: Vec<RawControl>,
    ) -> Result<ldap3::LdapResult, LdapError> {
        let (mut ldap, _) = self.prepared().await?;
        if !controls.is_empty() {
            ldap.with_controls(controls);
        }
        let r = ldap.add(dn, attrs).await;
        self.checked(r).await
    }

    /// A modify; with `permissive` the Permissive Modify control is sent when the server
    /// supports it (the result says whether it was).
    pub async fn modify(
        &self,
        dn: &str,
        mods: Vec<Mod<Vec<u8>>>,
        permissive: bool,
    ) -> Result<bool, LdapError> {
        let (mut ldap, caps) = self.prepared().await?;
        let sent = permissive && caps.permissive_modify;
        if sent {
            ldap.with_controls(control(PERMISSIVE_MODIFY));
        }
        let r = ldap.modify(dn, mods).await;
        self.checked(r).await.map(|_| sent)
    }

    pub async fn modifydn(
        &self,
        dn: &str,
        rdn: &str,
        new_superior: Option<&str>,
    ) -> Result<(), LdapError> {
        let (mut ldap, _) = self.prepared().await?;
        let r = ldap.modifydn(dn, rdn, true, new_superior).await;
        self.checked(r).await.map(|_| ())
    }

    pub async fn delete(&self, dn: &str, tree: bool) -> Result<(), LdapError> {
        let (mut ldap, caps) = self.prepared().await?;
        if tree && caps.tree_delete {
            ldap.with_controls(control(TREE_DELETE));
        }
        let r = ldap.delete(dn).await;
        self.checked(r).await.map(|_| ())
    }

    pub async fn capabilities(&self) -> Result<Arc<Capabilities>, LdapError> {
        Ok(self.handle().await?.1)
    }

    /// True when the connection is encrypted (LDAPS or StartTLS).
    pub fn is_tls(&self) -> bool {
        self.config.uses_tls()
    }
}

async fn root_dse(
    ldap: &mut Ldap,
    timeout: Duration,
    url: &str,
) -> Result<Capabilities, LdapError> {
    let res = ldap
        .with_timeout(timeout)
        .search("", Scope::Base, "(objectClass=*)", vec!["supportedControl"])
        .await
        .map_err(|e| LdapError::from_ldap3(e, url))?;
    let controls: HashSet<String> = res
        .0
        .into_iter()
        .filter(|e| e.0.id == 4)
        .flat_map(|e| {
            SearchEntry::construct(e)
                .attrs
                .into_iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("supportedControl"))
                .flat_map(|(_, v)| v)
        })
        .collect();
    Ok(Capabilities {
        post_read: controls.contains(POST_READ),
        permissive_modify: controls.contains(PERMISSIVE_MODIFY),
        tree_delete: controls.contains(TREE_DELETE),
    })
}

/// Errors while opening the connection: refused, timed out, TLS, certificate.
fn connect_error(e: ldap3::LdapError, url: &str) -> LdapError {
    match LdapError::from_ldap3(e, url) {
        LdapError::Server {
            code: 52, message, ..
        }
        | LdapError::Server {
            code: 51, message, ..
        } => LdapError::Unreachable {
            url: url.to_owned(),
            message,
        },
        other => other,
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The TLS client configuration: the CA file's certificates or the system roots, or, only
/// when `tls_verify = false`, no verification at all.
fn tls_config(config: &LdapConfig) -> Result<Arc<ClientConfig>, LdapError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapError::Config {
            message: format!("TLS setup: {e}"),
        })?;
    if !config.tls_verify {
        let client = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth();
        return Ok(Arc::new(client));
    }
    let mut roots = RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| LdapError::Config {
                message: format!("ca_file {}: {e}", path.display()),
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| LdapError::Config {
                    message: format!("ca_file {}: {e}", path.display()),
                })?;
                roots.add(cert).map_err(|e| LdapError::Config {
                    message: format!("ca_file {}: {e}", path.display()),
                })?;
            }
            if roots.is_empty() {
                return Err(LdapError::Config {
                    message: format!("ca_file {} holds no certificate", path.display()),
                });
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot use is skipped, as every TLS client does.
                let _ = roots.add(cert);
            }
        }
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// `tls_verify = false`: any certificate is accepted (signatures are still checked, so the
/// handshake itself is sound).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
