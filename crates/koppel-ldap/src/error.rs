//! What can go wrong talking to a directory, sorted so an operator knows what to fix:
//! credentials, reachability, certificates, configuration, secrets, or the server's refusal.

use koppel_connectors::target::TargetError;

/// An LDAP target's error. Messages never contain a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdapError {
    /// The server refused the bind DN and password (invalidCredentials, rc 49).
    #[error(
        "the server refused the credentials of {bind_dn} (invalidCredentials): check bind_dn and the password it points to{detail}"
    )]
    InvalidCredentials { bind_dn: String, detail: String },
    /// No connection could be made, or it was lost or timed out.
    #[error("{url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The server's certificate is not trusted or not valid for the host.
    #[error(
        "the certificate of {url} is not trusted: {message} (set ca_file to the CA that signed it)"
    )]
    Certificate { url: String, message: String },
    /// The configuration is wrong or asks for something unsafe.
    #[error("{message}")]
    Config { message: String },
    /// The password's environment variable is unset or its file unreadable.
    #[error("bind password not found: {message}")]
    SecretNotFound { message: String },
    /// The server answered an operation with an error result.
    #[error("{code_name} (rc {code}): {message}")]
    Server {
        code: u32,
        code_name: &'static str,
        message: String,
    },
    /// Something else in the protocol exchange.
    #[error("LDAP protocol error: {message}")]
    Protocol { message: String },
}

/// Result codes by name (RFC 4511 appendix A and the common extensions).
pub fn code_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        33 => "aliasProblem",
        34 => "invalidDNSyntax",
        36 => "aliasDereferencingProblem",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        71 => "affectsMultipleDSAs",
        80 => "other",
        _ => "unknownResultCode",
    }
}

pub const NO_SUCH_OBJECT: u32 = 32;
pub const OBJECT_CLASS_VIOLATION: u32 = 65;
pub const ENTRY_ALREADY_EXISTS: u32 = 68;
pub const INVALID_CREDENTIALS: u32 = 49;

impl LdapError {
    /// The server's result code, when the server answered with one.
    pub fn code(&self) -> Option<u32> {
        match self {
            LdapError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the connection is gone and the next call should open a new one.
    pub fn is_connection_loss(&self) -> bool {
        match self {
            LdapError::Unreachable { .. } => true,
            // busy, unavailable: the server says so itself.
            LdapError::Server { code, .. } => matches!(code, 51 | 52),
            _ => false,
        }
    }

    pub(crate) fn server(rc: u32, text: &str, matched: &str) -> LdapError {
        let mut message = text.trim().to_owned();
        if message.is_empty() {
            message = code_name(rc).to_owned();
        }
        if !matched.is_empty() && rc == NO_SUCH_OBJECT {
            message = format!("{message} (nearest existing entry: {matched})");
        }
        LdapError::Server {
            code: rc,
            code_name: code_name(rc),
            message,
        }
    }

    /// Sorts an `ldap3` error from an operation on an open connection.
    pub(crate) fn from_ldap3(e: ldap3::LdapError, url: &str) -> LdapError {
        use ldap3::LdapError as E;
        match e {
            E::LdapResult { result } => LdapError::server(result.rc, &result.text, &result.matched),
            E::Timeout { .. } => LdapError::Unreachable {
                url: url.to_owned(),
                message: "the server did not answer in time (timeout_seconds)".into(),
            },
            E::Io { source } => {
                if let Some(cert) = certificate_problem(&source) {
                    return LdapError::Certificate {
                        url: url.to_owned(),
                        message: cert,
                    };
                }
                LdapError::Unreachable {
                    url: url.to_owned(),
                    message: source.to_string(),
                }
            }
            E::Rustls { source } => match source {
                rustls::Error::InvalidCertificate(c) => LdapError::Certificate {
                    url: url.to_owned(),
                    message: format!("{c:?}"),
                },
                other => LdapError::Unreachable {
                    url: url.to_owned(),
                    message: format!("TLS: {other}"),
                },
            },
            E::OpSend { .. }
            | E::ResultRecv { .. }
            | E::IdScrubSend { .. }
            | E::MiscSend { .. }
            | E::EndOfStream => LdapError::Unreachable {
                url: url.to_owned(),
                message: "the connection was lost".into(),
            },
            E::FilterParsing => LdapError::Protocol {
                message: "a search filter did not parse".into(),
            },
            other => LdapError::Protocol {
                message: other.to_string(),
            },
        }
    }
}

/// The certificate problem inside a TLS handshake's I/O error, if that is what it is.
fn certificate_problem(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?;
    let rustls_error = inner.downcast_ref::<rustls::Error>()?;
    match rustls_error {
        rustls::Error::InvalidCertificate(c) => Some(match c {
            rustls::CertificateError::UnknownIssuer => {
                "it is signed by an unknown issuer".to_owned()
            }
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => {
                "it is not valid for this host name or address".to_owned()
            }
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                "it has expired".to_owned()
            }
            other => format!("{other:?}"),
        }),
        rustls::Error::NoCertificatesPresented => Some("the server sent no certificate".into()),
        _ => None,
    }
}

impl LdapError {
    /// As a target error of target `target`.
    pub fn into_target_error(self, target: &str) -> TargetError {
        let target = target.to_owned();
        match self {
            // Nothing about the entry: the run stops for this target and resumes later
            // (a bad password or certificate met on reconnecting mid-run included).
            e @ (LdapError::Unreachable { .. }
            | LdapError::InvalidCredentials { .. }
            | LdapError::Certificate { .. }
            | LdapError::SecretNotFound { .. }
            | LdapError::Server { code: 51 | 52, .. }) => TargetError::Unavailable {
                target,
                message: e.to_string(),
            },
            e @ LdapError::Config { .. } => TargetError::Config {
                target,
                message: e.to_string(),
            },
            e @ (LdapError::Server { .. } | LdapError::Protocol { .. }) => TargetError::Rejected {
                target,
                message: e.to_string(),
            },
        }
    }
}

impl From<LdapError> for TargetError {
    /// Without the target's name (the `LdapTarget` methods fill it in).
    fn from(e: LdapError) -> TargetError {
        e.into_target_error("ldap")
    }
}
