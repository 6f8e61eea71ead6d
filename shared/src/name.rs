//! Validated names for things that become paths, keys and labels: model names, alias names and
//! artifact file names.
//!
//! Untrusted text is turned into one of these newtypes at the boundary (CLI, HTTP, wire, disk);
//! past that point a `ModelName` can be joined onto a directory without a second thought.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string was refused as a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind}: {rule}")]
pub struct NameError {
    /// The text that was given.
    pub input: String,
    /// Which kind of name was expected.
    pub kind: &'static str,
    /// The rule it broke.
    pub rule: &'static str,
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $ty:ident, $kind:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(input: &str) -> Result<Self, NameError> {
                match $check(input) {
                    Ok(()) => Ok(Self(input.to_owned())),
                    Err(rule) => Err(NameError { input: input.to_owned(), kind: $kind, rule }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// A model (artifact) name: `fraud-detector`, `yolo.v8`. Lowercase ASCII letters, digits,
    /// `-`, `_` and `.`; starts with a letter or digit; at most 64 characters.
    ModelName,
    "model name",
    check_identifier
);

validated_name!(
    /// An alias on a model: `prod`, `staging`, `latest`, or any other identifier.
    AliasName,
    "alias name",
    check_identifier
);

validated_name!(
    /// The file name an artifact is installed under: one path component, no hidden files.
    FileName,
    "file name",
    check_file_name
);

impl FileName {
    /// For a directory artifact's archive (`model.tar`), the directory devices unpack it into
    /// (`model`); `None` when the name does not end in `.tar` after at least one character.
    pub fn unpacked_dir(&self) -> Option<&str> {
        self.0.strip_suffix(".tar").filter(|stem| !stem.is_empty())
    }
}

fn check_identifier(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 64 {
        return Err("must be 1 to 64 characters long");
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err("must start with a lowercase letter or a digit");
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may hold only lowercase letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

fn check_file_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 128 {
        return Err("must be 1 to 128 characters long");
    }
    if s.starts_with('.') {
        return Err("must not start with '.'");
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
    {
        return Err("may hold only ASCII letters, digits, '-', '_', '+' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_archive_unpacks_into_its_name_without_tar() {
        let name = |s: &str| s.parse::<FileName>().unwrap();
        assert_eq!(name("model.tar").unpacked_dir(), Some("model"));
        assert_eq!(name("m.v2.tar").unpacked_dir(), Some("m.v2"));
        assert_eq!(name("model.onnx").unpacked_dir(), None);
        assert_eq!(name("tar").unpacked_dir(), None);
    }

    #[test]
    fn model_names_are_path_safe() {
        for good in ["fraud-detector", "yolo.v8", "a", "resnet_50"] {
            assert!(good.parse::<ModelName>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "Upper",
            "x y",
            "-lead",
            &"a".repeat(65),
        ] {
            let err = bad.parse::<ModelName>().expect_err(bad);
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn file_names_are_one_component() {
        assert!("model.onnx".parse::<FileName>().is_ok());
        assert!("weights-v2+fp16.safetensors".parse::<FileName>().is_ok());
        for bad in ["", "..", ".", "../etc/passwd", "a/b", ".env", "a\0b"] {
            assert!(bad.parse::<FileName>().is_err(), "{bad:?}");
        }
    }
}
