//! The Patient compartment (vendored CompartmentDefinition): which parameters
//! of which resource types place a resource in a patient's compartment.

use std::sync::LazyLock;

use serde_json::Value;

/// `(resource type, parameters)` for every type in the Patient compartment.
pub static PATIENT: LazyLock<Vec<(String, Vec<String>)>> = LazyLock::new(|| {
    let def: Value = serde_json::from_str(include_str!(
        "../../fhir-profiles/compartmentdefinition-patient.json"
    ))
    .unwrap_or_default();
    def["resource"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let params: Vec<String> = r["param"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            Some((r["code"].as_str()?.to_string(), params))
        })
        .collect()
});

/// The compartment parameters of `res_type`, if it belongs to the Patient compartment.
pub fn patient_params(res_type: &str) -> Option<&'static [String]> {
    PATIENT
        .iter()
        .find(|(t, _)| t == res_type)
        .map(|(_, p)| p.as_slice())
}

#[cfg(test)]
mod tests {
    #[test]
    fn observation_is_in_the_patient_compartment() {
        let p = super::patient_params("Observation").unwrap();
        assert!(p.iter().any(|x| x == "subject"));
        assert!(super::patient_params("Practitioner").is_none());
    }
}
