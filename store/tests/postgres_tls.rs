//! PostgreSQL over TLS against a real server. The test makes a CA and a server certificate
//! for `db.ringgate.test` (rcgen), starts a throwaway cluster of its own (initdb, `ssl = on`,
//! a pg_hba.conf that accepts only `hostssl`) on a free port, opens the store with each
//! `sslmode`, and stops and removes the cluster when it ends, also when it fails.
//!
//! Needs `initdb` and `pg_ctl` (on PATH, or under /usr/lib/postgresql/*/bin); without them it
//! fails, saying so. As root it runs the cluster as the `postgres` user (initdb refuses root),
//! as scripts/ensure-postgres.sh does.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use store::{ConfigKind, DatabaseConfig, Store};

/// The server certificate's only name; URLs reach it through `hostaddr=127.0.0.1`.
const SERVER_NAME: &str = "db.ringgate.test";

/// A directory holding a cluster's data, certificates, socket and log.
struct Cluster {
    dir: PathBuf,
    port: u16,
    /// The unprivileged user the server runs as, when the test runs as root.
    owner: Option<String>,
    pg_ctl: PathBuf,
}

/// `initdb`/`pg_ctl`: from PATH, else the newest /usr/lib/postgresql/*/bin.
fn pg_tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .collect::<Vec<_>>();
    let mut debian = debian;
    debian.sort();
    on_path
        .chain(debian.into_iter().rev())
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found on PATH or under /usr/lib/postgresql/*/bin: this test starts \
                 its own TLS-enabled PostgreSQL and needs the server binaries \
                 (Debian: apt-get install -y postgresql)"
            )
        })
}

fn is_root() -> bool {
    let out = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The user to run the server as when we are root: `postgres`, or a system user made for it.
fn server_owner() -> Option<String> {
    if !is_root() {
        return None;
    }
    let exists = |user: &str| {
        Command::new("id")
            .arg("-u")
            .arg(user)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if exists("postgres") {
        return Some("postgres".into());
    }
    let user = "ringgate-pg";
    if !exists(user) {
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ]));
    }
    Some(user.into())
}

/// `id -u`/`id -g` of `user`.
fn ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = run(Command::new("id").arg(flag).arg(user));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// A port that was free a moment ago on 127.0.0.1 (postgres cannot be told to pick one).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

impl Cluster {
    /// A command run as the cluster's owner.
    fn as_owner(&self, program: &Path) -> Command {
        match &self.owner {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Writes `text` to `name` in the cluster's directory, owned by the server's user.
    fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write cluster file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some(user) = &self.owner {
            let (uid, gid) = ids(user);
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown");
        }
        path
    }

    /// initdb, the certificate and key, TLS-only access, and a started server.
    fn start(cert_pem: &str, key_pem: &str) -> Cluster {
        let initdb = pg_tool("initdb");
        let dir = std::env::temp_dir().join(format!("ringgate-pgtls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create cluster dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut cluster = Cluster {
            dir,
            port: 0,
            owner: server_owner(),
            pg_ctl: pg_tool("pg_ctl"),
        };
        if let Some(user) = &cluster.owner {
            let (uid, gid) = ids(user);
            std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid)).expect("chown");
        }
        let data = cluster.dir.join("data");
        run(cluster.as_owner(&initdb).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        cluster.write("server.crt", cert_pem, 0o644);
        cluster.write("server.key", key_pem, 0o600);
        // Only TLS connections over TCP are accepted; `local` lets pg_ctl stop the server.
        cluster.write(
            "data/pg_hba.conf",
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostssl all all ::1/128 trust\n",
            0o600,
        );
        // A port free now may be taken before the server binds it; then try another.
        for _ in 0..5 {
            cluster.port = free_port();
            let dir = cluster.dir.display().to_string();
            let options = format!(
                "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c ssl=on \
                 -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key",
                port = cluster.port
            );
            let log = cluster.dir.join("postgres.log");
            let out = cluster
                .as_owner(&cluster.pg_ctl)
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .output()
                .expect("run pg_ctl start");
            if out.status.success() {
                return cluster;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                text.contains("could not bind") || text.contains("already in use"),
                "pg_ctl start failed ({}):\n{}{}\n----- postgres.log -----\n{text}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        panic!("no free port for the TLS test cluster after 5 tries");
    }

    /// A URL for the cluster reaching `host` at 127.0.0.1, plus `params`.
    fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?hostaddr=127.0.0.1&{params}",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self
                .as_owner(&self.pg_ctl.clone())
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
            eprintln!("----- postgres.log -----\n{log}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA (certificate PEM, with its key) and a server certificate and key it signed.
struct Pki {
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("self-sign CA");
    (cert, key)
}

fn pki() -> Pki {
    let (ca, ca_key) = make_ca("ringgate test CA");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("sign server certificate");
    Pki {
        ca_pem: ca.pem(),
        server_pem: cert.pem(),
        server_key_pem: key.serialize_pem(),
    }
}

async fn open(url: &str) -> Result<Store, store::Error> {
    let open = Store::open(DatabaseConfig::from_url(url), None);
    tokio::time::timeout(Duration::from_secs(30), open)
        .await
        .unwrap_or_else(|_| panic!("opening {url} did not finish within 30 s"))
}

async fn opens(url: &str) -> Store {
    open(url)
        .await
        .unwrap_or_else(|e| panic!("{url} should connect: {e}"))
}

/// The error text of a connection that must fail.
async fn refused(url: &str) -> String {
    match open(url).await {
        Ok(_) => panic!("{url} connected, but must be refused"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_against_a_tls_only_server() {
    let pki = pki();
    let cluster = Cluster::start(&pki.server_pem, &pki.server_key_pem);
    let ca = cluster.write("ca.pem", &pki.ca_pem, 0o644);
    let (other_ca, _) = make_ca("some other CA");
    let wrong_ca = cluster.write("wrong-ca.pem", &other_ca.pem(), 0o644);
    let (ca, wrong_ca) = (ca.display(), wrong_ca.display());

    // verify-full with the right CA and name: the pool and a LISTEN connection both work
    // (the server takes nothing but TLS), and a notification makes the round trip.
    let store = opens(&cluster.url(
        SERVER_NAME,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    let mut changes = store
        .subscribe_config_changes()
        .await
        .expect("LISTEN over TLS");
    store
        .notify_config_changed(ConfigKind::Team, "tls")
        .await
        .expect("NOTIFY over TLS");
    let change = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("the notification arrives")
        .expect("subscription open");
    assert_eq!(change.id, "tls");

    // Encrypted without a certificate check: the name and CA do not matter.
    opens(&cluster.url("127.0.0.1", "sslmode=require")).await;
    opens(&cluster.url("127.0.0.1", "sslmode=prefer")).await;
    opens(&cluster.url("127.0.0.1", "")).await;
    // verify-ca checks the chain but not the name.
    opens(&cluster.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"))).await;

    // verify-full checks the name too.
    let err = refused(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert_mentions(
        &err,
        &[
            "error performing TLS handshake",
            "certificate not valid for name \"127.0.0.1\"",
        ],
    );
    // A CA that did not sign the server's certificate, named or not.
    let err = refused(&cluster.url(
        SERVER_NAME,
        &format!("sslmode=verify-full&sslrootcert={wrong_ca}"),
    ))
    .await;
    assert_mentions(
        &err,
        &[
            "cannot connect to PostgreSQL at db.ringgate.test:",
            &format!("sslmode=verify-full, sslrootcert={wrong_ca}"),
            "invalid peer certificate: UnknownIssuer",
        ],
    );
    let err = refused(&cluster.url(SERVER_NAME, "sslmode=verify-full")).await;
    assert_mentions(&err, &["UnknownIssuer"]);
    // require with a root is verify-ca, as in libpq.
    let err = refused(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={wrong_ca}"),
    ))
    .await;
    assert_mentions(&err, &["sslmode=verify-ca", "UnknownIssuer"]);

    // Plain text is refused by the server's pg_hba.conf.
    let err = refused(&cluster.url("127.0.0.1", "sslmode=disable")).await;
    assert_mentions(&err, &["no pg_hba.conf entry", "no encryption"]);
}
