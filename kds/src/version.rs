//! Version skew between a zone and the global: a zone newer than the global, or more than
//! two minor versions older, is refused with a message naming both versions. A version that
//! does not parse (a development build) is let through, as Kuma does.

/// How many minor versions a zone may lag behind the global.
pub const MAX_MINOR_BEHIND: u64 = 2;

fn parse(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().unwrap_or("0").parse().ok()?;
    Some((major, minor, patch))
}

/// `Ok` when a zone of `zone` version may connect to a global of `global` version.
pub fn check(global: &str, zone: &str) -> Result<(), String> {
    let (Some(g), Some(z)) = (parse(global), parse(zone)) else {
        return Ok(());
    };
    let text = || format!("zone version {zone}, global version {global}");
    if z.0 != g.0 {
        return Err(format!(
            "{}: a zone must run the same major version as the global",
            text()
        ));
    }
    if (z.1, z.2) > (g.1, g.2) {
        return Err(format!(
            "{}: the zone is newer than the global; upgrade the global first",
            text()
        ));
    }
    if g.1 - z.1 > MAX_MINOR_BEHIND {
        return Err(format!(
            "{}: the zone is more than {MAX_MINOR_BEHIND} minor versions behind; upgrade the zone",
            text()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn skew_rules() {
        assert!(check("2.14.3", "2.14.3").is_ok());
        assert!(check("2.14.3", "2.12.0").is_ok());
        assert!(check("2.14.3", "2.14.1").is_ok());
        let newer = check("2.14.3", "2.15.0").expect_err("newer zone");
        assert!(
            newer.contains("2.15.0") && newer.contains("2.14.3"),
            "{newer}"
        );
        assert!(check("2.14.3", "2.14.4").is_err());
        assert!(
            check("2.14.3", "2.11.9")
                .expect_err("old")
                .contains("2.11.9")
        );
        assert!(check("2.14.3", "3.0.0").is_err());
        assert!(check("0.1.0", "dev").is_ok());
        assert!(check("0.1.0", "").is_ok());
    }
}
