// Reads a JSON array of Kubernetes objects on stdin and validates each one of the
// monitoring.coreos.com kinds below against prometheus-operator's API types (the schemas
// its CRDs are generated from: types, required fields, enums, duration patterns).
// Prints a JSON array with one entry per object: null when valid, else the error messages.
// Used by tests/unit/helm/test_validate.py; kinds it does not know are an error.
import { readFileSync } from "node:fs";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const MODELS = {
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
};

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = objects.map((object) => {
  const Model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (!Model) {
    return [`no schema here for ${object.apiVersion} ${object.kind}`];
  }
  try {
    new Model(object).validate();
    return null;
  } catch (error) {
    const details = error.errors ?? [];
    return details.length
      ? details.map((e) => `${e.instancePath || "/"}: ${e.message}`)
      : [String(error.message ?? error)];
  }
});
process.stdout.write(JSON.stringify(results));
