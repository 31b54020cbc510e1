//! A local certificate authority: `plexus certs ca DIR` and `plexus certs issue DIR NAME`.
//!
//! `DIR/ca-key.pem` (mode 0600) and `DIR/ca-cert.pem` hold the CA (ECDSA P-256, CN
//! "Plexus local CA"). Each issued certificate gets `DIR/NAME-key.pem` (0600) and
//! `DIR/NAME-cert.pem`, is valid for both TLS server and client authentication (Open
//! vSwitch uses one certificate for both), and names `NAME`, `localhost`, `127.0.0.1`,
//! `::1` and any extra DNS names or IP addresses as subject alternative names.
//!
//! The CA certificate is not re-read when issuing: its parameters are fixed, so it is
//! rebuilt from the CA key with the same subject and key identifier, and what it signs
//! chains to the `ca-cert.pem` on disk.

use super::{Error, file_err};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub const CA_KEY: &str = "ca-key.pem";
pub const CA_CERT: &str = "ca-cert.pem";
const CA_CN: &str = "Plexus local CA";

fn gen_err(e: impl std::fmt::Display) -> Error {
    Error::Generate(e.to_string())
}

fn validity(p: &mut CertificateParams) {
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Plexus");
    dn.push(DnType::CommonName, CA_CN);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p);
    p
}

fn write(path: &Path, data: &str, private: bool) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    if private {
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| file_err(path, e))?;
    f.write_all(data.as_bytes()).map_err(|e| file_err(path, e))
}

/// Creates the CA in `dir` (created if missing). An existing CA is kept unless `force`.
/// Returns the CA certificate's path.
pub fn init(dir: &Path, force: bool) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    let (kp, cp) = (dir.join(CA_KEY), dir.join(CA_CERT));
    if !force && kp.exists() && cp.exists() {
        return Ok(cp);
    }
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = ca_params().self_signed(&key).map_err(gen_err)?;
    write(&kp, &key.serialize_pem(), true)?;
    write(&cp, &cert.pem(), false)?;
    Ok(cp)
}

/// Issues `NAME-key.pem` and `NAME-cert.pem` in `dir`, signed by the CA there. `sans`
/// are extra DNS names or IP addresses. Returns the files as [`super::TlsFiles`].
pub fn issue(dir: &Path, name: &str, sans: &[String]) -> Result<super::TlsFiles, Error> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        || name.starts_with('.')
        || name == "ca"
    {
        return Err(Error::Generate(format!(
            "bad certificate name {name:?} (letters, digits, '-', '.'; not \"ca\")"
        )));
    }
    let kp = dir.join(CA_KEY);
    let ca_pem = std::fs::read_to_string(&kp).map_err(|e| file_err(&kp, e))?;
    let ca_key = KeyPair::from_pem(&ca_pem).map_err(|e| file_err(&kp, e))?;
    let ca = ca_params().self_signed(&ca_key).map_err(gen_err)?;

    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Plexus");
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p);
    let mut names: Vec<String> = vec![
        name.into(),
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ];
    names.extend(sans.iter().cloned());
    for n in names {
        let san =
            match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into().map_err(|e| {
                    Error::Generate(format!("subject alternative name {n:?}: {e}"))
                })?),
            };
        if !p.subject_alt_names.contains(&san) {
            p.subject_alt_names.push(san);
        }
    }
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = p.signed_by(&key, &ca, &ca_key).map_err(gen_err)?;
    let files = super::TlsFiles::in_dir(dir, name);
    write(&files.private_key, &key.serialize_pem(), true)?;
    write(&files.certificate, &cert.pem(), false)?;
    Ok(files)
}
