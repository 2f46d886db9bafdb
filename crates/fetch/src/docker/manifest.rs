//! A registry's (or an OCI layout's) image manifests and indexes, read
//! into what a pull needs: every digest checked to be a sha256 before
//! anything is looked up by it.

use serde_json::Value;

use crate::FetchError;

/// What an image manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The image config's digest (`sha256:<hex>`).
    pub config: String,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// One layer of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `sha256:<64 hex>`.
    pub digest: String,
    /// The media type as given ("" when missing).
    pub media_type: String,
    /// The size the manifest declares (0 when missing).
    pub size: u64,
}

fn bad(what: &str, reason: impl Into<String>) -> FetchError {
    FetchError::Http {
        url: what.to_string(),
        reason: reason.into(),
    }
}

/// The most layers an image may have. Real images stay under ~127
/// (overlayfs stacks at most 500); a fetch holds every layer open until it
/// has converted the image, so a manifest listing thousands (one small
/// layer repeated) would otherwise run it out of file descriptors.
pub const MAX_LAYERS: usize = 500;

impl Manifest {
    /// Reads the image manifest `body` of `what`.
    pub fn parse(body: &[u8], what: &str) -> Result<Manifest, FetchError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| bad(what, format!("malformed manifest: {e}")))?;
        let config = v["config"]["digest"]
            .as_str()
            .ok_or_else(|| bad(what, "the manifest has no config"))?;
        digest_hex(config, what)?;
        if v["manifests"].is_array() {
            return Err(bad(
                what,
                "an index inside an index: unsupported (name the platform's manifest by its digest)",
            ));
        }
        let layers = v["layers"]
            .as_array()
            .ok_or_else(|| bad(what, "the manifest has no list of layers"))?;
        if layers.len() > MAX_LAYERS {
            return Err(bad(
                what,
                format!(
                    "the manifest lists {} layers, more than the {MAX_LAYERS} an image may have: refused",
                    layers.len()
                ),
            ));
        }
        let layers = layers
            .iter()
            .map(|l| {
                let digest = l["digest"]
                    .as_str()
                    .ok_or_else(|| bad(what, "a layer without a digest"))?;
                digest_hex(digest, what)?;
                Ok(Descriptor {
                    digest: digest.to_string(),
                    media_type: l["mediaType"].as_str().unwrap_or("").to_string(),
                    size: l["size"].as_u64().unwrap_or(0),
                })
            })
            .collect::<Result<_, FetchError>>()?;
        Ok(Manifest {
            config: config.to_string(),
            layers,
        })
    }

    /// The layers' sizes as declared, added up (saturating).
    pub fn declared_size(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| l.size)
            .fold(0, u64::saturating_add)
    }
}

/// The digest of the manifest for linux/`arch` in the index `index`.
pub fn pick_platform(index: &[u8], arch: &str, what: &str) -> Result<String, FetchError> {
    let v: Value =
        serde_json::from_slice(index).map_err(|e| bad(what, format!("malformed index: {e}")))?;
    let manifests = v["manifests"].as_array().cloned().unwrap_or_default();
    let found = manifests.iter().find(|m| {
        m["platform"]["os"].as_str() == Some("linux")
            && m["platform"]["architecture"].as_str() == Some(arch)
    });
    match found.and_then(|m| m["digest"].as_str()) {
        Some(d) => {
            digest_hex(d, what)?;
            Ok(d.to_string())
        }
        None => {
            let have: Vec<String> = manifests
                .iter()
                .map(|m| {
                    format!(
                        "{}/{}",
                        m["platform"]["os"].as_str().unwrap_or("?"),
                        m["platform"]["architecture"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            Err(bad(
                what,
                format!(
                    "no linux/{arch} image in the index (it has: {}); choose one with --arch",
                    have.join(", ")
                ),
            ))
        }
    }
}

/// The hex of a `sha256:<64 lower-case hex>` digest (as OCI spells it);
/// anything else is refused.
pub fn digest_hex(digest: &str, what: &str) -> Result<String, FetchError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| skiff_spec::id::is_lower_hex(h, skiff_spec::id::SHA256_HEX_LEN))
        .map(str::to_string)
        .ok_or_else(|| bad(what, format!("unsupported digest {digest:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn a_manifest_is_read_and_every_digest_checked() {
        let body = format!(
            r#"{{"config":{{"digest":"{A}"}},"layers":[{{"digest":"{A}","size":7,"mediaType":"m"}},{{"digest":"{A}","size":18446744073709551615}}]}}"#
        );
        let m = Manifest::parse(body.as_bytes(), "x").unwrap();
        assert_eq!(m.config, A);
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.layers[0].media_type, "m");
        assert_eq!(m.declared_size(), u64::MAX);
        for bad_body in [
            r#"{"layers":[]}"#.to_string(),
            format!(r#"{{"config":{{"digest":"{A}"}},"layers":[{{"size":1}}]}}"#),
            format!(r#"{{"config":{{"digest":"{A}"}},"layers":[{{"digest":"sha256:../../x"}}]}}"#),
            r#"{"config":{"digest":"sha512:00"}}"#.to_string(),
            format!(
                r#"{{"config":{{"digest":"{}"}},"layers":[]}}"#,
                A.to_uppercase().replace("SHA256", "sha256")
            ),
            format!(r#"{{"config":{{"digest":"{A}"}},"layers":{{"x":1}}}}"#),
            format!(r#"{{"config":{{"digest":"{A}"}}}}"#),
            format!(r#"{{"manifests":[],"config":{{"digest":"{A}"}},"layers":[]}}"#),
            "[".to_string(),
            // One small layer listed more often than an image may have layers.
            format!(
                r#"{{"config":{{"digest":"{A}"}},"layers":[{}]}}"#,
                vec![format!(r#"{{"digest":"{A}","size":1}}"#); MAX_LAYERS + 1].join(",")
            ),
        ] {
            assert!(
                Manifest::parse(bad_body.as_bytes(), "x").is_err(),
                "{bad_body}"
            );
        }
    }

    #[test]
    fn an_index_gives_the_platforms_digest_or_names_what_it_has() {
        let index = format!(
            r#"{{"manifests":[{{"digest":"{A}","platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
        );
        assert_eq!(pick_platform(index.as_bytes(), "arm64", "x").unwrap(), A);
        let err = pick_platform(index.as_bytes(), "amd64", "x").unwrap_err();
        assert!(err.to_string().contains("it has: linux/arm64"), "{err}");
        let hostile = r#"{"manifests":[{"digest":"../../etc","platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert!(pick_platform(hostile.as_bytes(), "amd64", "x").is_err());
    }
}
