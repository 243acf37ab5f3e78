//! The `--tls` run's certificates: a CA and a certificate it signed, made with the `openssl`
//! command line.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// A CA and a certificate it signed for 127.0.0.1, made with the `openssl` command line in a
/// directory of their own, removed on drop.
pub(super) struct Pki {
    dir: std::path::PathBuf,
    pub(super) ca: std::path::PathBuf,
    pub(super) cert: std::path::PathBuf,
    pub(super) key: std::path::PathBuf,
}

impl Pki {
    pub(super) fn make(name: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let ca_key = path(&pki.dir.join("ca-key.pem"));
        let csr = path(&pki.dir.join("cert.csr"));
        let ext = pki.dir.join("ext.cnf");
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n")?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let steps: [Vec<String>; 3] = [
            [
                "req",
                "-x509",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=stopcaster bench CA",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(ec.iter().map(|s| s.to_string()))
            .chain([
                "-keyout".into(),
                ca_key.clone(),
                "-out".into(),
                path(&pki.ca),
            ])
            .collect(),
            ["req", "-nodes", "-subj", "/CN=127.0.0.1"]
                .iter()
                .map(|s| s.to_string())
                .chain(ec.iter().map(|s| s.to_string()))
                .chain(["-keyout".into(), path(&pki.key), "-out".into(), csr.clone()])
                .collect(),
            [
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                &path(&pki.ca),
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-extfile",
                &path(&ext),
                "-out",
                &path(&pki.cert),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ];
        for step in steps {
            let out = Command::new("openssl")
                .args(&step)
                .stdin(Stdio::null())
                .output()
                .context("running openssl (--tls makes its certificates with it)")?;
            if !out.status.success() {
                bail!(
                    "openssl {} failed: {}",
                    step[0],
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(pki)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
