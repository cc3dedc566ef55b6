// CloudMem unattended responder for Azure: Defender for Cloud alerts on virtual machines -> an Azure Functions custom
// handler (`cloudmem serve-function`) -> Run Command + AVML/WinPmem -> a one-blob SAS upload into the evidence
// container, verified, with a custody manifest. Deploy into the resource group that holds the VMs to protect (the
// function's identity gets its roles on that resource group only). See infra/README.md.
targetScope = 'resourceGroup'

@description('Name prefix of the resources')
@maxLength(11)
param name string = 'cloudmem'

param location string = resourceGroup().location

@description('Lowest severity that captures, GuardDuty scale: Defender High = 8, Medium = 5, Low = 2')
param minSeverity string = '7'

@description('Optional comma-separated alert types (trailing * = prefix), e.g. VM_*; empty = all')
param allowedTypes string = ''

@description('true = only plan (read-only calls, the plan goes to the function log); set false once the plans look right')
@allowed([ 'true', 'false' ])
param dryRun string = 'true'

@description('Evidence container name')
param evidenceContainer string = 'evidence'

@description('Keep every evidence blob version immutable for this many days (account-level version WORM)')
@minValue(1)
@maxValue(146000)
param immutabilityDays int = 365

@description('Lock the immutability policy (irreversible: the retention can then only be extended); set false for a trial deployment')
param lockImmutability bool = true

@description('Also send the Security category of the activity log (Defender alerts) to the function through an action group')
param wireActivityLogAlert bool = true

@description('Container image running `cloudmem durable-worker` (infra/container/Dockerfile); set it to deploy the durable worker as a Container App (cloudmem-worker.bicep) and have the Function start orchestrations instead of capturing itself; empty = no worker')
param workerImage string = ''

@description('Durable worker: snapshot every managed disk of the VM beside the memory capture (CLOUDMEM_DISK_SNAPSHOTS); false = opt out')
param diskSnapshots bool = true

@description('Durable worker: subscription and resource group the disk snapshots are copied into (CLOUDMEM_FORENSIC_SUBSCRIPTION / _RESOURCE_GROUP); empty = no copy. Grant the worker Microsoft.Compute/snapshots/write there.')
param forensicSubscription string = ''
param forensicResourceGroup string = ''

var suffix = uniqueString(resourceGroup().id, name)
var deployWorker = !empty(workerImage)
var durableSecretName = 'cloudmem-durable-storage'

// Evidence: private, https only, versioned blobs, no shared key (the function uses its identity and user delegation SAS).
resource evidence 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: toLower(take('${name}ev${suffix}', 24))
  location: location
  sku: { name: 'Standard_ZRS' }
  kind: 'StorageV2'
  properties: {
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    encryption: {
      keySource: 'Microsoft.Storage'
      services: { blob: { enabled: true } }
    }
    // Version-level WORM: every blob version is immutable for immutabilityDays from its creation; the account's default
    // policy is Locked by default (it can then only be extended), so neither the function nor an administrator can
    // shorten it or delete evidence early. A manifest written again becomes a new version; the old one stays.
    immutableStorageWithVersioning: {
      enabled: true
      immutabilityPolicy: {
        immutabilityPeriodSinceCreationInDays: immutabilityDays
        state: lockImmutability ? 'Locked' : 'Unlocked'
        allowProtectedAppendWrites: false
      }
    }
  }
}

resource evidenceBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: evidence
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: { enabled: true, days: 30 }
    containerDeleteRetentionPolicy: { enabled: true, days: 30 }
  }
}

resource evidenceContainerResource 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: evidenceBlobs
  name: evidenceContainer
  properties: { publicAccess: 'None' }
}

// The Functions host's own storage (queues, leases, the deployment package).
resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: toLower(take('${name}fn${suffix}', 24))
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: {
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

// The Durable Task hub's storage (worker only): its connection string goes to Key Vault, never to an output.
resource durableStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = if (deployWorker) {
  name: toLower(take('${name}dt${suffix}', 24))
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: {
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = if (deployWorker) {
  name: toLower(take('${name}kv${suffix}', 24))
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    enablePurgeProtection: true
    softDeleteRetentionInDays: 90
  }
}

resource durableSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (deployWorker) {
  parent: vault
  name: durableSecretName
  properties: {
    value: 'DefaultEndpointsProtocol=https;AccountName=${durableStorage.name};AccountKey=${durableStorage!.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
  }
}

// Elastic Premium: captures take longer than the Consumption plan's 10-minute limit.
resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: '${name}-plan-${suffix}'
  location: location
  sku: { name: 'EP1', tier: 'ElasticPremium' }
  kind: 'elastic'
  properties: { reserved: true, maximumElasticWorkerCount: 2 }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${name}-ai-${suffix}'
  location: location
  kind: 'web'
  properties: { Application_Type: 'other' }
}

resource app 'Microsoft.Web/sites@2023-12-01' = {
  name: '${name}-responder-${suffix}'
  location: location
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      linuxFxVersion: ''
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      appSettings: [
        { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
        { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
        { name: 'AzureWebJobsStorage', value: 'DefaultEndpointsProtocol=https;AccountName=${hostStorage.name};AccountKey=${hostStorage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}' }
        { name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING', value: 'DefaultEndpointsProtocol=https;AccountName=${hostStorage.name};AccountKey=${hostStorage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}' }
        { name: 'WEBSITE_CONTENTSHARE', value: toLower('${name}-responder-${suffix}') }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'CLOUDMEM_CONTAINER_URL', value: '${evidence.properties.primaryEndpoints.blob}${evidenceContainer}' }
        { name: 'CLOUDMEM_MIN_SEVERITY', value: minSeverity }
        { name: 'CLOUDMEM_ALLOWED_TYPES', value: allowedTypes }
        { name: 'CLOUDMEM_DRY_RUN', value: dryRun }
        { name: 'CLOUDMEM_TOOL_FILE', value: '/home/site/wwwroot/tools/avml' }
        { name: 'CLOUDMEM_TIMEOUT_MINUTES', value: '110' }
        { name: 'DOTNET_SYSTEM_GLOBALIZATION_INVARIANT', value: '1' }
        // With the worker: the Function only starts the orchestration (a Key Vault reference, read with its identity).
        { name: 'CLOUDMEM_DURABLE_STORAGE', value: deployWorker ? '@Microsoft.KeyVault(VaultName=${toLower(take('${name}kv${suffix}', 24))};SecretName=${durableSecretName})' : '' }
      ]
    }
  }
}

// Least privilege: custom roles holding exactly what the capture calls (src/Connectors/Azure/AzureCapturePermissions.cs;
// a test compares them): no VM Contributor, no blob delete, no NIC/NSG rights (isolation stays manual). The capture role
// (Run Command and the workflow's disk snapshots) is assignable and assigned on this resource group only, the evidence
// role on the evidence account only. The hibernation role is defined here and assigned to no one: the operator assigns
// it to whoever runs `cloudmem capture azure --method hibernate`. Forensic copies of the snapshots need
// Microsoft.Compute/snapshots/write in the forensic resource group, granted there by its owner.
resource captureRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, name, 'cloudmem-capture')
  properties: {
    roleName: 'cloudmem capture (${name}, ${resourceGroup().name})'
    description: 'cloudmem: read VMs and their instance view; create, read and delete managed run commands; snapshot managed disks (no delete)'
    type: 'CustomRole'
    assignableScopes: [ resourceGroup().id ]
    permissions: [
      {
        // cloudmem-permissions: capture actions
        actions: [
          'Microsoft.Compute/disks/read'
          'Microsoft.Compute/locations/operations/read'
          'Microsoft.Compute/snapshots/read'
          'Microsoft.Compute/snapshots/write'
          'Microsoft.Compute/virtualMachines/instanceView/read'
          'Microsoft.Compute/virtualMachines/read'
          'Microsoft.Compute/virtualMachines/runCommands/delete'
          'Microsoft.Compute/virtualMachines/runCommands/read'
          'Microsoft.Compute/virtualMachines/runCommands/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource hibernationRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, name, 'cloudmem-hibernation')
  properties: {
    roleName: 'cloudmem hibernation (${name}, ${resourceGroup().name})'
    description: 'cloudmem: hibernate a VM, snapshot its OS disk and read the snapshot back through a read SAS (no delete)'
    type: 'CustomRole'
    assignableScopes: [ resourceGroup().id ]
    permissions: [
      {
        // cloudmem-permissions: hibernation actions
        actions: [
          'Microsoft.Compute/disks/read'
          'Microsoft.Compute/locations/operations/read'
          'Microsoft.Compute/snapshots/beginGetAccess/action'
          'Microsoft.Compute/snapshots/endGetAccess/action'
          'Microsoft.Compute/snapshots/read'
          'Microsoft.Compute/snapshots/write'
          'Microsoft.Compute/virtualMachines/deallocate/action'
          'Microsoft.Compute/virtualMachines/instanceView/read'
          'Microsoft.Compute/virtualMachines/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource evidenceRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, name, 'cloudmem-evidence')
  properties: {
    roleName: 'cloudmem evidence (${name}, ${resourceGroup().name})'
    description: 'cloudmem: user delegation key for the one-blob SAS, stage the tool, read back the evidence, write manifests; no delete'
    type: 'CustomRole'
    assignableScopes: [ resourceGroup().id ]
    permissions: [
      {
        // cloudmem-permissions: evidence actions
        actions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/read'
          'Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action'
        ]
        notActions: []
        // cloudmem-permissions: evidence dataActions
        dataActions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'
        ]
        notDataActions: []
      }
    ]
  }
}

resource captureAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, app.id, captureRole.id)
  properties: {
    roleDefinitionId: captureRole.id
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'cloudmem: read VMs and run Run Command for memory capture'
  }
}

resource evidenceAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(evidence.id, app.id, evidenceRole.id)
  scope: evidence
  properties: {
    roleDefinitionId: evidenceRole.id
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'cloudmem: one-blob SAS, tool staging, read back, manifests (no delete)'
  }
}

// Key Vault Secrets User for the Function on the vault (its CLOUDMEM_DURABLE_STORAGE Key Vault reference).
resource functionSecretsAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployWorker) {
  name: guid(resourceGroup().id, app.id, 'cloudmem-kv-secrets-user')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'cloudmem function: read the task hub connection string'
  }
}

// The durable worker (Container App, user-assigned identity with the same two custom roles).
module worker 'cloudmem-worker.bicep' = if (deployWorker) {
  name: '${name}-worker'
  dependsOn: [ durableSecret ]
  params: {
    name: name
    location: location
    suffix: suffix
    workerImage: workerImage
    containerUrl: '${evidence.properties.primaryEndpoints.blob}${evidenceContainer}'
    minSeverity: minSeverity
    dryRun: dryRun
    durableStorageName: durableStorage.name
    vaultName: vault.name
    durableSecretName: durableSecretName
    captureRoleId: captureRole.id
    evidenceRoleId: evidenceRole.id
    diskSnapshots: diskSnapshots ? 'true' : 'false'
    forensicSubscription: forensicSubscription
    forensicResourceGroup: forensicResourceGroup
    evidenceAccountName: evidence.name
  }
}

// Defender for Cloud writes its alerts to the activity log (category Security); an activity log alert on this resource
// group forwards them, in the common alert schema, to the function's HTTP trigger through an action group.
resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (wireActivityLogAlert) {
  name: '${name}-responder-ag'
  location: 'Global'
  properties: {
    groupShortName: 'cloudmem'
    enabled: true
    azureFunctionReceivers: [
      {
        name: 'cloudmem-respond'
        functionAppResourceId: app.id
        functionName: 'respond-http'
        httpTriggerUrl: 'https://${app.properties.defaultHostName}/api/respond-http?code=${listKeys('${app.id}/host/default', '2023-12-01').functionKeys.default}'
        useCommonAlertSchema: true
      }
    ]
  }
}

resource securityAlert 'Microsoft.Insights/activityLogAlerts@2020-10-01' = if (wireActivityLogAlert) {
  name: '${name}-defender-alerts'
  location: 'Global'
  properties: {
    enabled: true
    scopes: [ resourceGroup().id ]
    condition: {
      allOf: [
        { field: 'category', equals: 'Security' }
        { field: 'resourceType', equals: 'Microsoft.Compute/virtualMachines' }
      ]
    }
    actions: { actionGroups: [ { actionGroupId: actionGroup.id, webhookProperties: {} } ] }
    description: 'Defender for Cloud alerts on VMs in this resource group -> cloudmem responder'
  }
}

output functionApp string = app.name
output evidenceContainerUrl string = '${evidence.properties.primaryEndpoints.blob}${evidenceContainer}'
output principalId string = app.identity.principalId
output hibernationRoleId string = hibernationRole.id
