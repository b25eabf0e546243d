"""interop_05: the registry through boto3 (real botocore, SigV4, paginators) against a real
fleetkeyd: thing types, thing groups, things, principals and policies; AWS's errors."""

import os
import sys
import unittest

import boto3

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import Fleetkeyd, error_code  # noqa: E402

SERVER = None
IOT = None


def setUpModule():
    global SERVER, IOT
    SERVER = Fleetkeyd()
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = SERVER.endpoints["credentials_file"]
    os.environ["AWS_CONFIG_FILE"] = SERVER.endpoints["aws_config_file"]
    os.environ.pop("AWS_PROFILE", None)
    IOT = boto3.session.Session().client("iot", endpoint_url=SERVER.api_url)


def tearDownModule():
    code = SERVER.stop()
    SERVER.cleanup()
    if code != 0:
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


class ThingTypes(unittest.TestCase):
    def test_lifecycle(self):
        r = IOT.create_thing_type(thingTypeName="LockerController", thingTypeProperties={
            "thingTypeDescription": "locker", "searchableAttributes": ["site"]})
        self.assertTrue(r["thingTypeArn"].endswith(":thingtype/LockerController"))
        d = IOT.describe_thing_type(thingTypeName="LockerController")
        self.assertEqual(d["thingTypeProperties"]["searchableAttributes"], ["site"])
        self.assertFalse(d["thingTypeMetadata"]["deprecated"])
        IOT.create_thing(thingName="typed-1", thingTypeName="LockerController")
        self.assertEqual(IOT.describe_thing(thingName="typed-1")["thingTypeName"], "LockerController")
        # Deleting needs deprecation and no thing of the type.
        self.assertEqual(error_code(IOT.delete_thing_type, thingTypeName="LockerController")[0],
                         "InvalidRequestException")
        IOT.deprecate_thing_type(thingTypeName="LockerController")
        self.assertTrue(IOT.describe_thing_type(
            thingTypeName="LockerController")["thingTypeMetadata"]["deprecated"])
        IOT.delete_thing(thingName="typed-1")
        IOT.delete_thing_type(thingTypeName="LockerController")
        self.assertEqual(error_code(IOT.describe_thing_type, thingTypeName="LockerController"),
                         ("ResourceNotFoundException", 404))


class ThingGroups(unittest.TestCase):
    def test_hierarchy_membership_and_versions(self):
        IOT.create_thing_group(thingGroupName="lockers")
        IOT.create_thing_group(thingGroupName="berlin", parentGroupName="lockers",
                               thingGroupProperties={"thingGroupDescription": "Berlin"})
        d = IOT.describe_thing_group(thingGroupName="berlin")
        self.assertEqual(d["thingGroupMetadata"]["parentGroupName"], "lockers")
        self.assertEqual(d["version"], 1)
        v = IOT.update_thing_group(thingGroupName="berlin", thingGroupProperties={
            "attributePayload": {"attributes": {"site": "B1"}}}, expectedVersion=1)["version"]
        self.assertEqual(v, 2)
        self.assertEqual(error_code(IOT.update_thing_group, thingGroupName="berlin",
                                    thingGroupProperties={"thingGroupDescription": "x"},
                                    expectedVersion=1)[0], "VersionConflictException")
        for i in range(5):
            IOT.create_thing(thingName="grouped-%d" % i)
            IOT.add_thing_to_thing_group(thingGroupName="berlin", thingName="grouped-%d" % i)
        pages = IOT.get_paginator("list_things_in_thing_group").paginate(
            thingGroupName="berlin", PaginationConfig={"PageSize": 2})
        names = [n for p in pages for n in p["things"]]
        self.assertEqual(sorted(names), ["grouped-%d" % i for i in range(5)])
        groups = IOT.list_thing_groups_for_thing(thingName="grouped-0")["thingGroups"]
        self.assertEqual([g["groupName"] for g in groups], ["berlin"])
        children = IOT.list_thing_groups(parentGroup="lockers")["thingGroups"]
        self.assertEqual([g["groupName"] for g in children], ["berlin"])
        IOT.remove_thing_from_thing_group(thingGroupName="berlin", thingName="grouped-0")
        self.assertEqual(IOT.list_thing_groups_for_thing(thingName="grouped-0")["thingGroups"], [])

    def test_recursive_listings(self):
        # regions > eu > {de, fr}; de > munich. Direct children vs the whole subtree.
        IOT.create_thing_group(thingGroupName="regions")
        IOT.create_thing_group(thingGroupName="eu", parentGroupName="regions")
        for g in ("de", "fr"):
            IOT.create_thing_group(thingGroupName=g, parentGroupName="eu")
        IOT.create_thing_group(thingGroupName="munich", parentGroupName="de")
        direct = IOT.list_thing_groups(parentGroup="regions", recursive=False)["thingGroups"]
        self.assertEqual([g["groupName"] for g in direct], ["eu"])
        pages = IOT.get_paginator("list_thing_groups").paginate(
            parentGroup="regions", recursive=True, PaginationConfig={"PageSize": 2})
        subtree = [g["groupName"] for p in pages for g in p["thingGroups"]]
        self.assertEqual(subtree, ["de", "eu", "fr", "munich"])
        prefixed = IOT.list_thing_groups(parentGroup="regions", namePrefixFilter="m",
                                         recursive=True)["thingGroups"]
        self.assertEqual([g["groupName"] for g in prefixed], ["munich"])
        self.assertEqual(error_code(IOT.list_thing_groups, parentGroup="nowhere")[0],
                         "ResourceNotFoundException")
        for thing, group in (("r-1", "eu"), ("r-2", "de"), ("r-3", "munich"), ("r-4", "fr")):
            IOT.create_thing(thingName=thing)
            IOT.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
        IOT.add_thing_to_thing_group(thingGroupName="munich", thingName="r-2")  # in two groups
        self.assertEqual(IOT.list_things_in_thing_group(thingGroupName="de")["things"], ["r-2"])
        pages = IOT.get_paginator("list_things_in_thing_group").paginate(
            thingGroupName="de", recursive=True, PaginationConfig={"PageSize": 1})
        self.assertEqual([t for p in pages for t in p["things"]], ["r-2", "r-3"])
        everything = IOT.list_things_in_thing_group(thingGroupName="regions", recursive=True)
        self.assertEqual(everything["things"], ["r-1", "r-2", "r-3", "r-4"])
        # Policies on the way up, with recursive=True.
        doc = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect",' \
              '"Resource":"*"}]}'
        for name, group in (("p-regions", "regions"), ("p-de", "de"), ("p-munich", "munich")):
            IOT.create_policy(policyName=name, policyDocument=doc)
            arn = IOT.describe_thing_group(thingGroupName=group)["thingGroupArn"]
            IOT.attach_policy(policyName=name, target=arn)
        munich = IOT.describe_thing_group(thingGroupName="munich")["thingGroupArn"]
        own = IOT.list_attached_policies(target=munich)["policies"]
        self.assertEqual([p["policyName"] for p in own], ["p-munich"])
        up = IOT.list_attached_policies(target=munich, recursive=True)["policies"]
        self.assertEqual(sorted(p["policyName"] for p in up), ["p-de", "p-munich", "p-regions"])


class Things(unittest.TestCase):
    def test_paginator_and_attribute_filter(self):
        for i in range(7):
            IOT.create_thing(thingName="paged-%d" % i,
                             attributePayload={"attributes": {"site": "A" if i % 2 else "B"}})
        pages = list(IOT.get_paginator("list_things").paginate(PaginationConfig={"PageSize": 3}))
        self.assertGreater(len(pages), 2)
        names = [t["thingName"] for p in pages for t in p["things"]]
        self.assertEqual(len(names), len(set(names)))
        self.assertTrue({"paged-%d" % i for i in range(7)} <= set(names))
        site_a = IOT.list_things(attributeName="site", attributeValue="A")["things"]
        self.assertEqual(sorted(t["thingName"] for t in site_a), ["paged-1", "paged-3", "paged-5"])

    def test_errors_have_aws_shape(self):
        self.assertEqual(error_code(IOT.describe_thing, thingName="nope"),
                         ("ResourceNotFoundException", 404))
        self.assertEqual(error_code(IOT.create_thing, thingName="bad name!")[0],
                         "InvalidRequestException")
        self.assertEqual(error_code(IOT.create_policy, policyName="p",
                                    policyDocument="{not json")[0], "MalformedPolicyException")


if __name__ == "__main__":
    unittest.main(verbosity=2)
