// Validate KEDA objects against the schemas of KEDA's CRDs (@kubernetes-models/keda).
// stdin: a JSON array of objects; stdout: a JSON array of {kind, name, errors}.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";

const models = { ScaledObject, TriggerAuthentication };
let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((object) => {
  const model = models[object.kind];
  const name = object.metadata?.name ?? "";
  if (!model || object.apiVersion !== model.apiVersion) {
    return { kind: object.kind, name, errors: [`no KEDA schema for ${object.apiVersion} ${object.kind}`] };
  }
  try {
    new model(object).validate();
    return { kind: object.kind, name, errors: [] };
  } catch (error) {
    return { kind: object.kind, name, errors: [String(error.message ?? error)] };
  }
});
process.stdout.write(JSON.stringify(results));
