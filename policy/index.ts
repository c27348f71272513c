/**
 * The CrossGuard policy pack every `pulumi preview` and `pulumi up` of this project runs
 * (`--policy-pack policy`): the rules in rules.ts, all mandatory. It needs no Pulumi Cloud: the
 * Node.js language host runs it from this folder with the file state backend.
 */
import { PolicyPack } from "@pulumi/policy";
import { POLICIES } from "./rules";

new PolicyPack("backend-delivery", { policies: POLICIES });
