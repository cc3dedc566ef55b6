// The long-running CloudMem durable worker (`cloudmem durable-worker`, issue 14) as an Azure Container App: it runs the
// Durable Task orchestrations the Function starts (capture, poll, verify, disk snapshots, hibernation read-back,
// finalize), with no 230-second or 10-minute bound. Deployed by cloudmem-responder.bicep when `workerImage` is set.
//
// Identity: one user-assigned managed identity (created here, so its Key Vault role exists before the app first pulls
// its secret). The task hub's storage connection string lives only in Key Vault; the app reads it through a Key Vault
// secret reference with that identity (no secret in the template's outputs or the app's definition).
targetScope = 'resourceGroup'

@description('Name prefix of the resources')
@maxLength(11)
param name string

param location string

@description('Unique suffix shared with the responder template')
param suffix string

@description('Container image running `cloudmem durable-worker` (infra/container/Dockerfile), e.g. myacr.azurecr.io/cloudmem:1.0')
param workerImage string

@description('Evidence container URL (CLOUDMEM_CONTAINER_URL)')
param containerUrl string

@description('Lowest severity that captures (CLOUDMEM_MIN_SEVERITY)')
param minSeverity string

@description('true = plan only (CLOUDMEM_DRY_RUN)')
param dryRun string

@description('Name of the storage account holding the Durable Task hub (queues, tables, leases)')
param durableStorageName string

@description('Key Vault holding the hub storage connection string')
param vaultName string

@description('Name of the Key Vault secret with the hub storage connection string')
param durableSecretName string

@description('Role definitions the worker identity gets: capture (on the resource group) and evidence (on the evidence account)')
param captureRoleId string
param evidenceRoleId string

@description('The evidence storage account name (for the evidence role assignment scope)')
param evidenceAccountName string

@description('true = snapshot every managed disk beside the memory capture (CLOUDMEM_DISK_SNAPSHOTS)')
param diskSnapshots string

@description('Where the disk snapshots are copied (CLOUDMEM_FORENSIC_SUBSCRIPTION / _RESOURCE_GROUP); empty = no copy')
param forensicSubscription string
param forensicResourceGroup string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource durableSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: durableSecretName
}

resource evidenceAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: evidenceAccountName
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-worker-id-${suffix}'
  location: location
}

// Key Vault Secrets User (built-in): read secret values, nothing else, on this vault only.
var keyVaultSecretsUser = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')

resource secretsAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: keyVaultSecretsUser
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'cloudmem worker: read the task hub connection string'
  }
}

resource captureAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, identity.id, captureRoleId)
  properties: {
    roleDefinitionId: captureRoleId
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'cloudmem worker: read VMs and run Run Command for memory capture'
  }
}

resource evidenceAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(evidenceAccount.id, identity.id, evidenceRoleId)
  scope: evidenceAccount
  properties: {
    roleDefinitionId: evidenceRoleId
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'cloudmem worker: one-blob SAS, tool staging, read back, manifests (no delete)'
  }
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${name}-worker-logs-${suffix}'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 90
  }
}

resource managedEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: toLower('${name}-env-${suffix}')
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
    zoneRedundant: false
  }
}

resource worker 'Microsoft.App/containerApps@2024-03-01' = {
  name: toLower('${name}-worker-${suffix}')
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  dependsOn: [ secretsAssignment ]
  properties: {
    managedEnvironmentId: managedEnv.id
    configuration: {
      // A worker, not a web app: no ingress; one replica per revision change (single active revision).
      activeRevisionsMode: 'Single'
      secrets: [
        {
          name: 'durable-storage'
          keyVaultUrl: durableSecret.properties.secretUri
          identity: identity.id
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'durable-worker'
          image: workerImage
          args: [ 'durable-worker' ]
          resources: { cpu: json('2.0'), memory: '4Gi' }
          env: [
            { name: 'CLOUDMEM_DURABLE_STORAGE', secretRef: 'durable-storage' }
            { name: 'CLOUDMEM_DURABLE_HUB', value: 'cloudmem' }
            { name: 'CLOUDMEM_CONTAINER_URL', value: containerUrl }
            { name: 'CLOUDMEM_MIN_SEVERITY', value: minSeverity }
            { name: 'CLOUDMEM_DRY_RUN', value: dryRun }
            { name: 'CLOUDMEM_TIMEOUT_MINUTES', value: '110' }
            { name: 'CLOUDMEM_DISK_SNAPSHOTS', value: diskSnapshots }
            { name: 'CLOUDMEM_FORENSIC_SUBSCRIPTION', value: forensicSubscription }
            { name: 'CLOUDMEM_FORENSIC_RESOURCE_GROUP', value: forensicResourceGroup }
            // DefaultAzureCredential picks the user-assigned identity by its client id.
            { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
            { name: 'DOTNET_SYSTEM_GLOBALIZATION_INVARIANT', value: '1' }
          ]
        }
      ]
      // Always one worker: the Durable Task hub's queues are polled by it; more replicas share the partitions.
      scale: { minReplicas: 1, maxReplicas: 2 }
    }
  }
}

output workerName string = worker.name
output workerPrincipalId string = identity.properties.principalId
output durableStorage string = durableStorageName
