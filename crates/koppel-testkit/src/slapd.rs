//! A throwaway OpenLDAP server per test: Debian's `slapd` from a `slapd.conf` in a temp dir,
//! on free loopback ports (plain/StartTLS and LDAPS), killed when dropped.
//!
//! The instance has the core, cosine, inetorgperson and nis schemas, the mdb backend with
//! `dbnosync`, the memberof, refint and ppolicy overlays, a certificate from [`TestPki`],
//! and the entries `dc=example,dc=test`, `ou=People` and `ou=Groups` under it.

use std::fs;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::tls::TestPki;

/// A running (or stopped) slapd of one test.
pub struct Slapd {
    dir: TempDir,
    pki: TestPki,
    port: u16,
    tls_port: u16,
    child: Option<Child>,
}

impl Slapd {
    pub const SUFFIX: &'static str = "dc=example,dc=test";
    pub const PEOPLE: &'static str = "ou=People,dc=example,dc=test";
    pub const GROUPS: &'static str = "ou=Groups,dc=example,dc=test";
    pub const ROOT_DN: &'static str = "cn=admin,dc=example,dc=test";
    const PASSWORD: &'static str = "koppel-test-root";

    /// Writes the configuration and base entries into a temp dir and starts slapd.
    pub fn start() -> io::Result<Slapd> {
        let dir = tempfile::Builder::new().prefix("koppel-slapd-").tempdir()?;
        let pki = TestPki::generate(&dir.path().join("tls"))?;
        let port = free_port()?;
        let mut tls_port = free_port()?;
        while tls_port == port {
            tls_port = free_port()?;
        }
        let mut slapd = Slapd {
            dir,
            pki,
            port,
            tls_port,
            child: None,
        };
        slapd.configure()?;
        slapd.start_again()?;
        Ok(slapd)
    }

    fn configure(&self) -> io::Result<()> {
        let d = self.dir.path();
        let data = d.join("data");
        fs::create_dir_all(&data)?;
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
moduleload ppolicy
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
sizelimit unlimited
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 1073741824
suffix "{suffix}"
rootdn "{root}"
rootpw {pw}
directory {data}
dbnosync
index objectClass eq
index uid,cn,mail,employeeNumber,entryUUID eq
index member,uniqueMember eq
overlay memberof
overlay refint
refint_attributes member uniqueMember
refint_nothing "cn=nobody"
overlay ppolicy
"#,
            d = d.display(),
            ca = self.pki.ca_pem.display(),
            cert = self.pki.cert_pem.display(),
            key = self.pki.key_pem.display(),
            suffix = Self::SUFFIX,
            root = Self::ROOT_DN,
            pw = Self::PASSWORD,
            data = data.display(),
        );
        let conf_path = d.join("slapd.conf");
        fs::write(&conf_path, conf)?;
        let base = format!(
            "dn: {suffix}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n\
             dc: example\no: Example\n\n\
             dn: {people}\nobjectClass: organizationalUnit\nou: People\n\n\
             dn: {groups}\nobjectClass: organizationalUnit\nou: Groups\n",
            suffix = Self::SUFFIX,
            people = Self::PEOPLE,
            groups = Self::GROUPS,
        );
        let ldif = d.join("base.ldif");
        fs::write(&ldif, base)?;
        run(Command::new("slapadd")
            .arg("-f")
            .arg(&conf_path)
            .arg("-l")
            .arg(&ldif))
    }

    /// Starts slapd (again, after [`stop`](Self::stop)) on the same ports and data, and
    /// waits until it accepts connections.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = fs::File::create(self.dir.path().join("slapd.log"))?;
        let child = Command::new("slapd")
            .arg("-d")
            .arg("0")
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!("{} {}/", self.url(), self.ldaps_url()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                let log = fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "slapd exited with {status}: {log}"
                )));
            }
            let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(self.port) && up(self.tls_port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("slapd did not start listening in 15 s"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops slapd (SIGTERM, then SIGKILL after 5 s); the data stays for `start_again`.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `ldap://127.0.0.1:<port>` (plain, or StartTLS).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:<port>`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bind_dn(&self) -> &'static str {
        Self::ROOT_DN
    }

    pub fn password(&self) -> &'static str {
        Self::PASSWORD
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.pki.ca_pem
    }

    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// The temp dir holding configuration, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the temp dir holding the root password (for `password_file` tests).
    pub fn password_file(&self) -> io::Result<PathBuf> {
        let path = self.dir.path().join("root-password");
        fs::write(&path, format!("{}\n", Self::PASSWORD))?;
        Ok(path)
    }

    /// Adds LDIF entries with `ldapadd` as the root DN.
    pub fn ldapadd(&self, ldif: &str) -> io::Result<()> {
        self.ldap_tool("ldapadd", ldif)
    }

    /// Applies LDIF changes with `ldapmodify` as the root DN.
    pub fn ldapmodify(&self, ldif: &str) -> io::Result<()> {
        self.ldap_tool("ldapmodify", ldif)
    }

    fn ldap_tool(&self, tool: &str, ldif: &str) -> io::Result<()> {
        let mut child = Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                Self::ROOT_DN,
                "-w",
                Self::PASSWORD,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(ldif.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{tool} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}
