//! Test certificate authority and server certificates, written as PEM files for real servers.
//! Made fresh per test directory with `rcgen`: a trusted CA, a server certificate and a stranger CA.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Names every server certificate is valid for: tests connect to loopback by IP and by name.
const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// The PEM files of one test PKI, all inside `dir`.
///
/// `cert_pem`/`key_pem` are signed by `ca_pem` and valid for `127.0.0.1` (IP SAN) and `localhost`.
/// `untrusted_ca_pem` is an unrelated CA: a client that trusts only it must reject the server.
/// `wrong_host_cert_pem`/`wrong_host_key_pem` are signed by the trusted CA but name another host,
/// for hostname-verification tests.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub untrusted_ca_pem: PathBuf,
    pub wrong_host_cert_pem: PathBuf,
    pub wrong_host_key_pem: PathBuf,
}

impl TestPki {
    /// Generates the CAs and certificates and writes them into `dir` (created when missing):
    /// `ca.pem`, `server.pem`, `server-key.pem`, `untrusted-ca.pem`, `wrong-host.pem`,
    /// `wrong-host-key.pem`.
    pub fn generate(dir: &Path) -> io::Result<TestPki> {
        fs::create_dir_all(dir)?;
        let pki = TestPki {
            dir: dir.to_path_buf(),
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("server.pem"),
            key_pem: dir.join("server-key.pem"),
            untrusted_ca_pem: dir.join("untrusted-ca.pem"),
            wrong_host_cert_pem: dir.join("wrong-host.pem"),
            wrong_host_key_pem: dir.join("wrong-host-key.pem"),
        };

        let ca = new_ca("koppel test CA")?;
        fs::write(&pki.ca_pem, ca.pem())?;

        let (cert, key) = server_cert(&ca, "koppel test server", &SERVER_NAMES)?;
        fs::write(&pki.cert_pem, cert)?;
        write_key(&pki.key_pem, &key)?;

        // Same trusted CA, so only the name check can reject it.
        let (cert, key) = server_cert(&ca, "somewhere else", &["other.invalid"])?;
        fs::write(&pki.wrong_host_cert_pem, cert)?;
        write_key(&pki.wrong_host_key_pem, &key)?;

        // Its key is dropped: nothing is ever signed by it, it only stands in for a wrong trust root.
        let untrusted = new_ca("koppel untrusted test CA")?;
        fs::write(&pki.untrusted_ca_pem, untrusted.pem())?;

        Ok(pki)
    }

    /// The trusted CA certificate as PEM text, for clients that take the bytes.
    pub fn ca_pem_text(&self) -> io::Result<String> {
        fs::read_to_string(&self.ca_pem)
    }
}

fn new_ca(common_name: &str) -> io::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(to_io)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "koppel tests");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    let key = KeyPair::generate().map_err(to_io)?;
    CertifiedIssuer::self_signed(params, key).map_err(to_io)
}

/// Returns the certificate PEM and its private key PEM.
fn server_cert(
    ca: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: &[&str],
) -> io::Result<(String, String)> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    // CertificateParams::new turns "127.0.0.1" into an IP SAN and the rest into DNS SANs.
    let mut params = CertificateParams::new(names).map_err(to_io)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // OpenSSL-based clients build the chain more reliably with the AKI present.
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    let key = KeyPair::generate().map_err(to_io)?;
    let cert = params.signed_by(&key, ca).map_err(to_io)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Fixed, ordinary validity: rcgen's default (1975–4096) is unusual enough to trip some stacks.
fn set_validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
}

/// Private keys are written owner-only: servers such as slapd warn about or refuse readable keys.
fn write_key(path: &Path, pem: &str) -> io::Result<()> {
    fs::write(path, pem)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn to_io(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("test certificate generation failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_pem_file() {
        let dir = tempfile::tempdir().expect("temp dir for the PKI");
        let pki = TestPki::generate(dir.path()).expect("PKI generation");
        for (path, marker) in [
            (&pki.ca_pem, "BEGIN CERTIFICATE"),
            (&pki.cert_pem, "BEGIN CERTIFICATE"),
            (&pki.key_pem, "BEGIN PRIVATE KEY"),
            (&pki.untrusted_ca_pem, "BEGIN CERTIFICATE"),
            (&pki.wrong_host_cert_pem, "BEGIN CERTIFICATE"),
            (&pki.wrong_host_key_pem, "BEGIN PRIVATE KEY"),
        ] {
            let text = fs::read_to_string(path).expect("PEM file readable");
            assert!(text.contains(marker), "{} lacks {marker}", path.display());
        }
        assert_ne!(
            fs::read(&pki.ca_pem).expect("ca"),
            fs::read(&pki.untrusted_ca_pem).expect("untrusted ca"),
        );
    }

    /// openssl is the independent judge here: the chain verifies against the CA and the IP SAN
    /// matches, and it does not verify against the stranger CA.
    #[test]
    fn openssl_verifies_server_cert_for_loopback_ip() {
        let Ok(out) = std::process::Command::new("openssl")
            .arg("version")
            .output()
        else {
            eprintln!("skipped: openssl CLI not installed");
            return;
        };
        assert!(out.status.success());
        let dir = tempfile::tempdir().expect("temp dir for the PKI");
        let pki = TestPki::generate(dir.path()).expect("PKI generation");
        let verify = |ca: &Path, cert: &Path, ip: &str| {
            std::process::Command::new("openssl")
                .args(["verify", "-verify_ip", ip, "-CAfile"])
                .arg(ca)
                .arg(cert)
                .output()
                .expect("openssl runs")
                .status
                .success()
        };
        assert!(verify(&pki.ca_pem, &pki.cert_pem, "127.0.0.1"));
        assert!(!verify(&pki.ca_pem, &pki.cert_pem, "127.0.0.2"));
        assert!(!verify(&pki.untrusted_ca_pem, &pki.cert_pem, "127.0.0.1"));
        assert!(!verify(&pki.ca_pem, &pki.wrong_host_cert_pem, "127.0.0.1"));
    }
}
