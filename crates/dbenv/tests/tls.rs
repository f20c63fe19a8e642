//! TLS as the DSN's `sslmode` says, against a real server with a test CA.

use std::path::{Path, PathBuf};
use std::process::Command;

use dbenv::{connect, Dsn};
use pgcluster::{ClusterOptions, OsUser, TestCluster};

/// A CA and a server certificate for `localhost` only (not 127.0.0.1), and a
/// second, unrelated CA.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let output = Command::new("openssl").args(args).current_dir(dir.path()).output().unwrap();
            assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        };
        for ca in ["ca", "other-ca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        std::fs::write(dir.path().join("san.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
            "-out",
            "server.crt",
        ]);
        // A client certificate (X.509 v3) for the role `postgres`, signed by the CA.
        std::fs::write(dir.path().join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=postgres",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.cnf",
            "-out",
            "client.crt",
        ]);
        // The server's OS user must read its key, and nobody else.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path().join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        if let Some(user) = OsUser::for_server(&pgcluster::LocalEnv::from_process()).unwrap() {
            user.chown(&dir.path().join("server.key")).unwrap();
            user.chown(&dir.path().join("server.crt")).unwrap();
        }
        Certificates { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn tls_cluster(certs: &Certificates) -> TestCluster {
    let file = |name: &str| certs.path(name).display().to_string();
    TestCluster::start_with(ClusterOptions {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), file("server.crt")),
            ("ssl_key_file".into(), file("server.key")),
            // The server asks for (but does not require) a client certificate.
            ("ssl_ca_file".into(), file("ca.crt")),
        ],
        ..Default::default()
    })
    .unwrap()
}

fn dsn(cluster: &TestCluster, host: &str, query: &str) -> Dsn {
    let text = format!(
        "postgresql://postgres:{}@{host}:{}/postgres{query}",
        dbenv::percent_encode(cluster.password()),
        cluster.port()
    );
    Dsn::parse("DATABASE_URL", &text).unwrap()
}

fn encrypted(dsn: &Dsn) -> anyhow::Result<bool> {
    let mut client = connect(dsn, "DATABASE_URL")?;
    Ok(client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])?.get(0))
}

fn root(path: &Path) -> String {
    format!("&sslrootcert={}", dbenv::percent_encode(&path.display().to_string()))
}

#[test]
fn sslmodes_behave_as_in_libpq() {
    let certs = Certificates::new();
    let cluster = tls_cluster(&certs);
    // The server listens on 127.0.0.1 only; `localhost` must resolve there.
    let ca = root(&certs.path("ca.crt"));
    let other = root(&certs.path("other-ca.crt"));

    assert!(!encrypted(&dsn(&cluster, "127.0.0.1", "?sslmode=disable")).unwrap());
    // `prefer` (the default) does not set TLS up on loopback, where it protects nothing.
    assert!(!encrypted(&dsn(&cluster, "127.0.0.1", "")).unwrap());
    assert!(
        encrypted(&dsn(&cluster, "127.0.0.1", "?sslmode=require")).unwrap(),
        "require does not check the certificate"
    );
    assert!(
        encrypted(&dsn(&cluster, "127.0.0.1", &format!("?sslmode=verify-ca{ca}"))).unwrap(),
        "verify-ca ignores the host name"
    );
    assert!(encrypted(&dsn(&cluster, "localhost", &format!("?sslmode=verify-full{ca}"))).unwrap());

    let wrong_host = encrypted(&dsn(&cluster, "127.0.0.1", &format!("?sslmode=verify-full{ca}"))).unwrap_err();
    assert!(format!("{wrong_host:#}").contains("cannot connect"), "{wrong_host:#}");
    let wrong_ca = encrypted(&dsn(&cluster, "localhost", &format!("?sslmode=verify-ca{other}"))).unwrap_err();
    assert!(format!("{wrong_ca:#}").contains("cannot connect"), "{wrong_ca:#}");
    // require with a root certificate checks the CA, as libpq does.
    assert!(encrypted(&dsn(&cluster, "127.0.0.1", &format!("?sslmode=require{other}"))).is_err());

    let no_root = format!("{:#}", encrypted(&dsn(&cluster, "localhost", "?sslmode=verify-full")).unwrap_err());
    assert!(no_root.contains("DATABASE_URL asks for sslmode=verify-full but names no sslrootcert"), "{no_root}");
    let missing = format!(
        "{:#}",
        encrypted(&dsn(&cluster, "localhost", "?sslmode=verify-full&sslrootcert=/nonexistent.crt")).unwrap_err()
    );
    assert!(missing.contains("cannot read sslrootcert `/nonexistent.crt`"), "{missing}");
}

#[test]
fn require_fails_against_a_server_without_tls() {
    let cluster = TestCluster::start().unwrap();
    let error = format!("{:#}", encrypted(&dsn(&cluster, "127.0.0.1", "?sslmode=require")).unwrap_err());
    assert!(error.contains("cannot connect"), "{error}");
    assert!(!encrypted(&dsn(&cluster, "127.0.0.1", "?sslmode=prefer")).unwrap(), "prefer falls back to plain TCP");
}

#[test]
fn a_client_certificate_is_presented_with_sslcert_and_sslkey() {
    let certs = Certificates::new();
    let cluster = tls_cluster(&certs);
    let file = |name: &str| dbenv::percent_encode(&certs.path(name).display().to_string());
    let query = format!(
        "?sslmode=verify-full{}&sslcert={}&sslkey={}",
        root(&certs.path("ca.crt")),
        file("client.crt"),
        file("client.key")
    );
    let mut client = connect(&dsn(&cluster, "localhost", &query), "DATABASE_URL").unwrap();
    let client_dn: Option<String> =
        client.query_one("SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().get(0);
    assert_eq!(client_dn.as_deref(), Some("/CN=postgres"));
    // Without them no certificate is presented.
    let mut plain = connect(
        &dsn(&cluster, "localhost", &format!("?sslmode=verify-full{}", root(&certs.path("ca.crt")))),
        "DATABASE_URL",
    )
    .unwrap();
    let none: Option<String> =
        plain.query_one("SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().get(0);
    assert_eq!(none, None);
    let half = format!(
        "{:#}",
        encrypted(&dsn(&cluster, "localhost", &format!("?sslmode=require&sslcert={}", file("client.crt"))))
            .unwrap_err()
    );
    assert!(half.contains("sslcert and sslkey go together"), "{half}");
}

#[test]
fn sslrootcert_system_trusts_the_system_store_only() {
    let certs = Certificates::new();
    let cluster = tls_cluster(&certs);
    // The test CA is not in the system's store: the chain is refused.
    let error = encrypted(&dsn(&cluster, "localhost", "?sslmode=verify-full&sslrootcert=system")).unwrap_err();
    assert!(format!("{error:#}").contains("cannot connect"), "{error:#}");
}
