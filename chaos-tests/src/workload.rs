//! The EVs that charge while the hub is attacked: each presents the suite's card (the
//! CSMS accepts it, so every session is an OCPP transaction) and plugs in; at the end
//! each is unplugged so that every transaction must be stopped.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::Result;
use crate::hub::CARD;
use crate::probe::{Control, eventually, gun};
use crate::rng::Rng;

/// Longest an EV may take from plug-in to current flowing.
const CHARGING: Duration = Duration::from_secs(60);

/// The EV plugged into `gun`: 400 V, a big battery so it never finishes during a run.
fn ev(gun: u16, rng: &mut Rng) -> Value {
    json!({
        "gun": gun,
        "battery_v": 400.0,
        "soc": rng.range(20, 40) as f64,
        "max_current_a": rng.range(80, 200) as f64,
        "target_soc": 95.0,
        "ev_mac": format!("02:00:00:00:0C:{gun:02X}"),
        "capacity_kwh": 200.0,
    })
}

/// Guns with an EV, seeded: two or three of the six, at least two cabinets among them.
pub fn choose_guns(rng: &mut Rng) -> Vec<u16> {
    let count = rng.range(2, 3) as usize;
    loop {
        let mut guns: Vec<u16> = Vec::new();
        while guns.len() < count {
            let g = rng.range(0, 5) as u16;
            if !guns.contains(&g) {
                guns.push(g);
            }
        }
        guns.sort_unstable();
        let cabinets: std::collections::BTreeSet<u16> = guns.iter().map(|g| g / 2).collect();
        if cabinets.len() >= 2 {
            return guns;
        }
    }
}

/// Presents the card and plugs an EV into each of `guns`.
pub async fn arrive(control: Control, guns: &[u16], rng: &mut Rng) -> Result<()> {
    for &g in guns {
        control.rfid(g, CARD).await?;
        control.plug(ev(g, rng)).await?;
    }
    Ok(())
}

/// Waits until current flows into every EV of `guns`.
pub async fn wait_charging(control: Control, guns: &[u16]) -> Result<()> {
    eventually("every EV charging", CHARGING, async || {
        let state = control.state().await.map_err(|e| e.to_string())?;
        let idle: Vec<String> = guns
            .iter()
            .filter(|&&g| {
                gun(&state, u64::from(g))["current_a"]
                    .as_f64()
                    .unwrap_or(0.0)
                    < 5.0
            })
            .map(|&g| {
                let s = gun(&state, u64::from(g));
                format!(
                    "gun {g}: hlc {} auth {} lock {} energised {} {} A",
                    s["hlc_phase"], s["auth"], s["lock"], s["energised"], s["current_a"]
                )
            })
            .collect();
        if idle.is_empty() {
            Ok(())
        } else {
            Err(idle.join("; "))
        }
    })
    .await
}

/// Unplugs every EV of `guns`.
pub async fn leave(control: Control, guns: &[u16]) -> Result<()> {
    for &g in guns {
        control.unplug(g).await?;
    }
    Ok(())
}
